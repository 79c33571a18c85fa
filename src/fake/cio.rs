//! The fake customer.io Track API (v1 and v2), with the real limits, event de-duplication,
//! 207 per-operation errors and an inspection API.
//!
//! SKELETON: to be built.
