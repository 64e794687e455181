//! A TCP echo server on the runtime the bourse net core uses: one thread, one monoio
//! io_uring runtime, optionally pinned, `TCP_NODELAY`, one read then one write of what was
//! read per turn (as the net core reads a batch of frames and writes a batch of replies).
//! The baseline `bourse-load` measures order round trips against. Self-contained: the
//! `tcp-echo` binary uses this module alone.

use std::io;
use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

/// Bytes one read takes at most.
const READ_BYTES: usize = 64 * 1024;

/// Serves `listener` forever on the calling thread (pinned to `cpu` if given).
pub fn serve(listener: std::net::TcpListener, cpu: Option<usize>) -> io::Result<()> {
    if let Some(cpu) = cpu {
        monoio::utils::bind_to_cpu_set(Some(cpu))
            .map_err(|e| io::Error::other(format!("cannot pin to cpu {cpu}: {e}")))?;
    }
    let mut runtime =
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().with_entries(1024).build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    monoio::spawn(echo(stream));
                }
                // Out of descriptors and the like: the server goes on with the
                // connections it has.
                Err(e) => eprintln!("tcp-echo: accept: {e}"),
            }
        }
    })
}

async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut stream = stream;
    let mut buf = Vec::with_capacity(READ_BYTES);
    loop {
        buf.clear();
        let (result, returned) = stream.read(buf).await;
        buf = returned;
        match result {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (result, returned) = stream.write_all(buf).await;
        buf = returned;
        if result.is_err() {
            return;
        }
    }
}

/// An echo server on 127.0.0.1 (ephemeral port) on its own thread, for tests and
/// in-process runs. The thread lives as long as the process.
pub fn spawn_thread() -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new().name("tcp-echo".into()).spawn(move || {
        if let Err(e) = serve(listener, None) {
            eprintln!("tcp-echo: {e}");
        }
    })?;
    Ok(addr)
}
