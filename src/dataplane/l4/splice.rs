//! Zero-copy forwarding with splice(2): socket → pipe → socket, the bytes
//! never enter user space. Each direction owns one pipe. Readiness comes
//! from tokio so a splice that would block parks the task like a read does.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Largest chunk moved per splice; matches the default pipe capacity.
pub const CHUNK: usize = 64 * 1024;

pub struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
    /// Bytes sitting in the pipe, not yet written to the destination.
    pending: usize,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let (rd, wr) =
            nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        Ok(Pipe { rd, wr, pending: 0 })
    }

    /// Moves up to CHUNK bytes from `src` into the pipe. Returns 0 at EOF.
    pub async fn fill(&mut self, src: &TcpStream) -> io::Result<usize> {
        loop {
            src.readable().await?;
            let r = src.try_io(Interest::READABLE, || {
                splice(
                    src.as_fd(),
                    None,
                    self.wr.as_fd(),
                    None,
                    CHUNK,
                    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
                )
                .map_err(io::Error::from)
            });
            match r {
                Ok(n) => {
                    self.pending += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes everything in the pipe to `dst`.
    pub async fn drain(&mut self, dst: &TcpStream) -> io::Result<()> {
        while self.pending > 0 {
            dst.writable().await?;
            let r = dst.try_io(Interest::WRITABLE, || {
                splice(
                    self.rd.as_fd(),
                    None,
                    dst.as_fd(),
                    None,
                    self.pending,
                    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
                )
                .map_err(io::Error::from)
            });
            match r {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pending -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
