//! Harness for running the real Stallwatch binaries.
