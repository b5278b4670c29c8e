//! The domains of eventsmith's worked examples, shared by the examples and their tests.

// The classic worked example names its attribute `foo`; keeping the name keeps it recognisable.
#![allow(clippy::disallowed_names)]

pub mod bank;
pub mod example;
pub mod web;
