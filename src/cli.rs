//! The command line (SPEC 1): clap definitions only, no I/O.
