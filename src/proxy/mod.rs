//! The request path: normalise, authenticate, resolve, decide, audit, forward.
