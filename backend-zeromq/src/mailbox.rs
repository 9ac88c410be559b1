//! How async code hands commands to a thread that owns ZeroMQ sockets.
//!
//! ZeroMQ sockets belong to one thread, and that thread sleeps in
//! `zmq::poll`, which cannot wait on a Rust channel. So a command goes into
//! a channel and a bell rings: an empty message on an `inproc` socket the
//! thread polls beside its others. Ringing never blocks (a full bell is
//! already ringing), so async callers never block the runtime.
//!
//! A flag keeps at most one ring in flight: a sender rings only when it
//! flips the flag, and the thread clears it after silencing the bell and
//! before taking the commands, so no command is ever left without a ring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// The sending side, cheap to clone and usable from any thread or task.
pub struct Mailbox<T> {
    commands: mpsc::Sender<T>,
    bell: Arc<Mutex<zmq::Socket>>,
    rung: Arc<AtomicBool>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
            bell: Arc::clone(&self.bell),
            rung: Arc::clone(&self.rung),
        }
    }
}

/// The receiving side, owned by the socket thread.
pub struct Inbox<T> {
    commands: mpsc::Receiver<T>,
    bell: zmq::Socket,
    rung: Arc<AtomicBool>,
}

/// The thread behind the mailbox has stopped.
#[derive(Debug)]
pub struct Stopped;

/// A mailbox and its inbox on `context` (the inbox's thread must use the
/// same context).
pub fn mailbox<T>(context: &zmq::Context) -> zmq::Result<(Mailbox<T>, Inbox<T>)> {
    let address = format!("inproc://bell-{}", uuid::Uuid::now_v7().simple());
    let receiver = context.socket(zmq::PULL)?;
    receiver.bind(&address)?;
    let ringer = context.socket(zmq::PUSH)?;
    ringer.set_linger(0)?;
    ringer.connect(&address)?;
    let (sender, commands) = mpsc::channel();
    let rung = Arc::new(AtomicBool::new(false));
    Ok((
        Mailbox {
            commands: sender,
            bell: Arc::new(Mutex::new(ringer)),
            rung: Arc::clone(&rung),
        },
        Inbox {
            commands,
            bell: receiver,
            rung,
        },
    ))
}

impl<T> Mailbox<T> {
    /// Queues a command and wakes the thread.
    pub fn send(&self, command: T) -> Result<(), Stopped> {
        self.commands.send(command).map_err(|_| Stopped)?;
        if !self.rung.swap(true, Ordering::AcqRel) {
            let bell = self.bell.lock().unwrap_or_else(|p| p.into_inner());
            // At most one ring is in flight, so this never meets the
            // socket's high-water mark.
            let _ = bell.send(&[][..], zmq::DONTWAIT);
        }
        Ok(())
    }
}

/// Sends its command once, when dropped: ties a socket thread's life to
/// the value that owns it, such as the stream its results are read from.
pub struct SendOnDrop<T> {
    mailbox: Mailbox<T>,
    command: Option<T>,
}

impl<T> Mailbox<T> {
    /// A guard that sends `command` when it is dropped.
    pub fn on_drop(&self, command: T) -> SendOnDrop<T> {
        SendOnDrop {
            mailbox: self.clone(),
            command: Some(command),
        }
    }
}

impl<T> Drop for SendOnDrop<T> {
    fn drop(&mut self) {
        if let Some(command) = self.command.take() {
            // A stopped thread needs no command.
            let _ = self.mailbox.send(command);
        }
    }
}

impl<T> Inbox<T> {
    /// The socket to poll for readability beside the thread's others.
    pub fn bell(&self) -> &zmq::Socket {
        &self.bell
    }

    /// Every command waiting; silences the bell and clears the flag first,
    /// so a command sent meanwhile either is taken now or rings again.
    pub fn take(&self) -> Vec<T> {
        while self.bell.recv_bytes(zmq::DONTWAIT).is_ok() {}
        self.rung.store(false, Ordering::Release);
        self.commands.try_iter().collect()
    }
}
