//! The customer.io Track API client (SPEC 4).
