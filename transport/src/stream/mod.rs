//! Framed connections over a byte stream ([`crate::wire`]), shared by the
//! `tcp` backend and the two-sided channel of the `shm` backend.
//!
//! [`client::StreamClient`] is the requester's end; [`server`] runs the
//! owner's end, one thread per connection.

pub mod client;
pub mod server;
