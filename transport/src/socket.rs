//! The byte streams under the `tcp` and `shm` backends, the vectored
//! write that puts a frame header and its payload on the wire without
//! copying the payload, and the waits a receiver uses: busy-polling with
//! non-blocking reads ([`PolledReader`]) or sleeping in `poll(2)`.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::poll::PollMode;

/// A connected stream socket (TCP or Unix).
pub trait Socket: Read + Write + AsRawFd + Send + Sync + Sized + 'static {
    fn try_clone(&self) -> io::Result<Self>;
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Read what has arrived without blocking; `WouldBlock` when nothing
    /// has.
    fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length; the descriptor is
        // owned by `self` and open.
        let n = unsafe {
            libc::recv(
                self.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// End the connection in both directions, even while other handles
    /// to the socket (an accepted connection's writer) are still open.
    fn shut_down(&self) {
        // SAFETY: shutting down a descriptor `self` owns; failure (already
        // closed by the peer) needs no handling.
        unsafe { libc::shutdown(self.as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Wait until the socket is readable (data, end of stream or an error)
    /// or `timeout` passes; `false` on timeout.
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up: never wake before the deadline the caller asked for.
        let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for a descriptor `self` owns.
        let n = unsafe { libc::poll(&mut pfd, 1, millis) };
        match n {
            0 => Ok(false),
            n if n > 0 => Ok(true),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Reads that busy-poll the socket for the poll mode's budget before they
/// block, so a receiver that is spinning when data arrives needs no wake-up.
#[derive(Debug)]
pub struct PolledReader<S> {
    socket: S,
    poll: PollMode,
}

impl<S: Socket> PolledReader<S> {
    pub fn new(socket: S, poll: PollMode) -> Self {
        PolledReader { socket, poll }
    }

    pub fn get_ref(&self) -> &S {
        &self.socket
    }
}

impl<S: Socket> Read for PolledReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let socket = &self.socket;
        let spun = self.poll.spin_until(Instant::now() + self.poll.spin(), || {
            match socket.read_now(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
                other => Some(other),
            }
        });
        match spun {
            Some(outcome) => outcome,
            None => self.socket.read(buf),
        }
    }
}

impl Socket for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

impl Socket for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
}

/// Write every byte of `parts`, in order, with as few system calls as the
/// kernel allows.
pub fn write_all_parts(out: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// True for the errors a read timeout produces.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
