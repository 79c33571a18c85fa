//! Orchestration of one run: read GIS, plan, send, checkpoint state.
