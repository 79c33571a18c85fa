//! The GIS GraphQL client (SPEC 3).
