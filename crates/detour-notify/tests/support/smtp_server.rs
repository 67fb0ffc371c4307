//! A real SMTP server for the tests: the protocol (command parsing, the state machine, replies,
//! dot-unstuffing of DATA) is the `mailin` crate's, an implementation independent of lettre;
//! this file only moves lines between a socket and a `mailin::Session` and records what
//! arrived. Blocking threads, because a session is not `Send` and the tests' runtime should not
//! carry the server.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use mailin::{Action, Handler, Response, SessionBuilder};

/// One message as the server stored it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The envelope: `MAIL FROM` and `RCPT TO`.
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// DATA, dot-unstuffed, with CRLF line ends.
    pub data: Vec<u8>,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

impl SmtpServer {
    /// Accepts every message.
    pub fn start() -> Self {
        Self::start_with(None, false)
    }

    /// Answers every `RCPT TO` with `code text`, as a relay does for an unknown mailbox.
    pub fn refusing_recipients(code: u16, text: &str) -> Self {
        Self::start_with(Some((code, text.to_owned())), false)
    }

    /// Closes each connection after its first message without a word, as a relay does that
    /// times idle sessions out.
    pub fn one_message_per_connection() -> Self {
        Self::start_with(None, true)
    }

    fn start_with(rcpt_reply: Option<(u16, String)>, hang_up_after_message: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP test server");
        let addr = listener.local_addr().expect("local address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let store = Arc::clone(&received);
        let accepted = Arc::clone(&connections);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                accepted.fetch_add(1, Ordering::SeqCst);
                let delivered = Arc::new(AtomicBool::new(false));
                let handler = Recorder {
                    store: Arc::clone(&store),
                    current: Received::default(),
                    rcpt_reply: rcpt_reply.clone(),
                    delivered: Arc::clone(&delivered),
                };
                let hang_up = hang_up_after_message.then_some(delivered);
                thread::spawn(move || serve(stream, handler, hang_up));
            }
        });
        Self { addr, received, connections }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("store").clone()
    }
}

/// `hang_up`: close the connection once this flag is set (a message was stored).
fn serve(stream: TcpStream, handler: Recorder, hang_up: Option<Arc<AtomicBool>>) {
    // A reply goes out in several writes; without this, Nagle holds each later one until the
    // client's delayed ACK (40 ms), as no real mail server would.
    let _ = stream.set_nodelay(true);
    let Ok(peer) = stream.peer_addr() else { return };
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut session = SessionBuilder::new("mx.test").build(peer.ip(), handler);
    if session.greeting().write_to(&mut writer).is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply => {
                if response.write_to(&mut writer).and_then(|()| writer.flush()).is_err() {
                    return;
                }
                if hang_up.as_ref().is_some_and(|delivered| delivered.load(Ordering::SeqCst)) {
                    return;
                }
            }
            Action::Close | Action::UpgradeTls => {
                let _ = response.write_to(&mut writer);
                return;
            }
        }
    }
}

struct Recorder {
    store: Arc<Mutex<Vec<Received>>>,
    current: Received,
    rcpt_reply: Option<(u16, String)>,
    /// A message has been stored on this connection.
    delivered: Arc<AtomicBool>,
}

impl Handler for Recorder {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.current = Received { mail_from: from.to_owned(), ..Received::default() };
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if let Some((code, text)) = &self.rcpt_reply {
            return Response::custom(*code, text.clone());
        }
        self.current.rcpt_to.push(to.to_owned());
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.store.lock().expect("store").push(std::mem::take(&mut self.current));
        self.delivered.store(true, Ordering::SeqCst);
        mailin::response::OK
    }
}

/// A local address where nothing listens.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local address")
}
