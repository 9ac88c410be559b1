//! Raw zmq PUSH/PULL of the same bytes (`wire::to_bytes` of each mail):
//! no journal, no acks, no redelivery. It is the transport's ceiling, not
//! a client doing the same durable work; competing consumers are PULL
//! sockets the PUSH sockets deal to in turn.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, ensure};
use async_trait::async_trait;
use mq_archiver::{Envelope, wire};
use tokio::sync::mpsc;

use crate::system::{Arrival, Consumer, Producer, System, body_len_of_payload, id_of_payload};

/// Raw zmq sockets in this process.
pub struct RawZmq {
    context: zmq::Context,
    prefetch: usize,
    /// Where the consumers' PULL sockets listen; producers connect to all.
    endpoints: Arc<Mutex<Vec<String>>>,
}

impl RawZmq {
    /// A fresh zmq context.
    pub fn new(prefetch: u16) -> Self {
        Self {
            context: zmq::Context::new(),
            prefetch: usize::from(prefetch),
            endpoints: Arc::default(),
        }
    }
}

#[async_trait]
impl System for RawZmq {
    fn no_fan_out(&self) -> Option<&'static str> {
        Some("PUSH/PULL deals each mail to one consumer")
    }

    async fn prepare(&self, subscribers: usize) -> anyhow::Result<()> {
        ensure!(
            subscribers == 1,
            "PUSH/PULL deals each message to one consumer: no fan-out"
        );
        Ok(())
    }

    async fn producer(&self) -> anyhow::Result<Box<dyn Producer>> {
        let socket = self.context.socket(zmq::PUSH)?;
        socket.set_sndhwm(self.prefetch as i32)?;
        let endpoints = self.endpoints.lock().expect("not poisoned").clone();
        ensure!(!endpoints.is_empty(), "start the consumers first");
        for endpoint in &endpoints {
            socket.connect(endpoint)?;
        }
        Ok(Box::new(RawZmqProducer(Mutex::new(socket))))
    }

    async fn consumer(&self, _subscriber: usize) -> anyhow::Result<Box<dyn Consumer>> {
        let socket = self.context.socket(zmq::PULL)?;
        socket.set_rcvhwm(self.prefetch as i32)?;
        socket.set_rcvtimeo(100)?;
        socket.bind("tcp://127.0.0.1:*")?;
        let endpoint = socket
            .get_last_endpoint()?
            .map_err(|_| anyhow::anyhow!("endpoint is not UTF-8"))?;
        self.endpoints.lock().expect("not poisoned").push(endpoint);
        let (sender, arrivals) = mpsc::channel(self.prefetch);
        std::thread::Builder::new()
            .name("raw-zmq-pull".into())
            .spawn(move || pull(&socket, &sender))?;
        Ok(Box::new(RawZmqConsumer {
            arrivals,
            prefetch: self.prefetch,
        }))
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        self.endpoints.lock().expect("not poisoned").clear();
        Ok(())
    }
}

/// Receives until the consumer is dropped.
fn pull(socket: &zmq::Socket, sender: &mpsc::Sender<anyhow::Result<Arrival>>) {
    while !sender.is_closed() {
        let payload = match socket.recv_bytes(0) {
            Ok(payload) => payload,
            Err(zmq::Error::EAGAIN) => continue,
            Err(error) => {
                let _ = sender.blocking_send(Err(error.into()));
                return;
            }
        };
        let at = Instant::now();
        let arrival = id_of_payload(&payload).map(|id| Arrival {
            id,
            bytes: body_len_of_payload(&payload),
            at,
        });
        if sender.blocking_send(arrival).is_err() {
            return;
        }
    }
}

struct RawZmqProducer(Mutex<zmq::Socket>);

#[async_trait]
impl Producer for RawZmqProducer {
    async fn send(&self, batch: &[Envelope]) -> anyhow::Result<()> {
        // A full PUSH queue blocks the send: let the runtime run the rest.
        tokio::task::block_in_place(|| {
            let socket = self.0.lock().expect("not poisoned");
            for envelope in batch {
                socket.send(wire::to_bytes(envelope), 0)?;
            }
            Ok(())
        })
    }
}

struct RawZmqConsumer {
    arrivals: mpsc::Receiver<anyhow::Result<Arrival>>,
    prefetch: usize,
}

#[async_trait]
impl Consumer for RawZmqConsumer {
    async fn receive(&mut self, arrivals: &mut Vec<Arrival>) -> anyhow::Result<()> {
        let first = self
            .arrivals
            .recv()
            .await
            .context("the PULL thread stopped")?;
        arrivals.push(first?);
        for _ in 1..self.prefetch {
            match self.arrivals.try_recv() {
                Ok(arrival) => arrivals.push(arrival?),
                Err(_) => break,
            }
        }
        Ok(())
    }
}
