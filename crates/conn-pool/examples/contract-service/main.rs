//! `contract-service ADDR`: the SSE conformance test service on
//! `sse-conn-pool`'s client, for the public suite (launchdarkly/sse-contract-tests).
//!
//! ```text
//! cargo run --release -p sse-conn-pool --example contract-service -- 127.0.0.1:8000
//! ```
//!
//! Listens on ADDR (a loopback address only) until the harness sends
//! `DELETE /`. The protocol is in `docs/SSE-CONTRACT.md`;
//! the service is in `service.rs`.

mod service;

use std::net::SocketAddr;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: contract-service ADDR   (a loopback address, e.g. 127.0.0.1:8000)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(addr), None) = (args.next(), args.next()) else {
        return usage();
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("contract-service: {addr:?} is not an address: {e}");
            return usage();
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("contract-service: {addr} is not a loopback address; refusing to listen on it");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("contract-service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("contract-service: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("contract-service: listening on http://{addr}");
        service::serve(listener).await;
        ExitCode::SUCCESS
    })
}
