//! The fake GIS: GraphQL validated against the real schema, raw-token auth, OAuth refresh
//! with rotation, paging, a seeded data generator and a mutation API.
//!
//! SKELETON: to be built.
