//! Pure planning (SPEC 4.1 to 4.3): from the state, the people and applications read and
//! the run's start time, what to send. No I/O, no clock.
//!
//! SKELETON: to be built.
