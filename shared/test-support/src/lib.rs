#![forbid(unsafe_code)]
//! What artisync's tests share.

pub mod components;
pub mod postgres;
