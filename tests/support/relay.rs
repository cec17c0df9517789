//! A TCP relay a test puts between a gateway and PostgreSQL, to freeze a replica's
//! connection (bytes stop, sockets stay open: a partition) or take the database away
//! (connections dropped, new ones refused: an outage) and give it back.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Bytes are held; sockets stay open.
    Freeze,
    /// Every connection is closed and new ones are closed at once.
    Down,
}

pub struct Relay {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Relay {
    /// Relays to `target` (e.g. 127.0.0.1:5432) on an ephemeral port.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *rx.borrow() == Mode::Down {
                    drop(client);
                    continue;
                }
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    pipe(client, server, rx).await;
                });
            }
        });
        Relay { addr, mode }
    }

    pub fn set(&self, m: Mode) {
        self.mode.send_replace(m);
    }

    /// A `key=value` connection string through the relay.
    pub fn dsn(&self, rest: &str) -> String {
        format!("host=127.0.0.1 port={} {rest}", self.addr.port())
    }
}

async fn pipe(a: TcpStream, b: TcpStream, mut mode: watch::Receiver<Mode>) {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let mut ba = [0u8; 16 * 1024];
    let mut bb = [0u8; 16 * 1024];
    loop {
        // Held while frozen; gone when down.
        loop {
            let m = *mode.borrow_and_update();
            match m {
                Mode::Pass => break,
                Mode::Down => return,
                Mode::Freeze => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            r = ar.read(&mut ba) => {
                let Ok(n) = r else { return };
                if n == 0 { return; }
                if !wait_pass(&mut mode).await { return; }
                if bw.write_all(&ba[..n]).await.is_err() { return; }
            }
            r = br.read(&mut bb) => {
                let Ok(n) = r else { return };
                if n == 0 { return; }
                if !wait_pass(&mut mode).await { return; }
                if aw.write_all(&bb[..n]).await.is_err() { return; }
            }
            _ = mode.changed() => {}
        }
    }
}

/// Waits until bytes may pass; false when the relay went down.
async fn wait_pass(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        let m = *mode.borrow_and_update();
        match m {
            Mode::Pass => return true,
            Mode::Down => return false,
            Mode::Freeze => {
                if mode.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}
