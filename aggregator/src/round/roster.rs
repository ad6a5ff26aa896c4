//! The roster: nodes connected now, each with an outbox, and one inbox for all they say.
//!
//! Every admitted [`Link`] gets two tasks: a writer that drains the node's outbox (so a
//! slow node never stalls the round engine or the other nodes) and a reader that forwards
//! whatever the node says into the roster's single inbox. The round engine only ever
//! sees [`RosterEvent`]s, whatever the transport.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hansa_protocol::{CloseCode, Link, MerchantId, Message};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::serve::{greet, JoinedNode, Standing};

/// Messages queued for one node before its writer applies back-pressure to the engine.
const OUTBOX_CAPACITY: usize = 8;

/// Events queued from all nodes before readers wait for the engine.
const INBOX_CAPACITY: usize = 1024;

/// How long a node handed in without its hello has to say it.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Something a node did.
#[derive(Debug)]
pub enum RosterEvent {
    /// A node finished its hello and can be put in a cohort.
    Joined(MerchantId),
    /// A node said something.
    Said(MerchantId, Message),
    /// A node's link closed or failed; it is no longer in the roster.
    Left(MerchantId, String),
}

/// What the reader and writer tasks report, tagged with the connection they belong to so
/// that the news of an old connection never removes a node that has since reconnected.
#[derive(Debug)]
struct Inbound {
    merchant: MerchantId,
    connection: u64,
    news: News,
}

#[derive(Debug)]
enum News {
    Greeted,
    Said(Message),
    Gone(String),
}

struct Connected {
    connection: u64,
    outbox: mpsc::Sender<Arc<Message>>,
}

/// A node handed to the roster, greeted already or not.
enum Admission {
    /// Came through [`crate::serve::accept_nodes`], hello done.
    Greeted(Link),
    /// A fresh link (an in-memory one, say): the roster greets it.
    Fresh(Link),
}

/// Hands new links to a [`Roster`] from another task (the accept loop, a simulator).
#[derive(Clone)]
pub struct Admissions {
    tx: mpsc::Sender<Admission>,
}

impl Admissions {
    /// Queues a node whose hello is done. Returns false once the roster is gone.
    pub async fn admit_greeted(&self, node: JoinedNode) -> bool {
        self.tx.send(Admission::Greeted(node.link)).await.is_ok()
    }

    /// Queues a link on which no hello was said yet; the roster greets it.
    /// Returns false once the roster is gone.
    pub async fn admit(&self, link: Link) -> bool {
        self.tx.send(Admission::Fresh(link)).await.is_ok()
    }
}

/// The connected nodes.
pub struct Roster {
    nodes: BTreeMap<MerchantId, Connected>,
    admissions_rx: mpsc::Receiver<Admission>,
    admissions_tx: mpsc::Sender<Admission>,
    inbox_tx: mpsc::Sender<Inbound>,
    inbox: mpsc::Receiver<Inbound>,
    next_connection: u64,
    standing: watch::Receiver<Standing>,
    ever_joined: std::collections::BTreeSet<MerchantId>,
}

impl Roster {
    /// An empty roster; `standing` is what nodes greeted here are told in their welcome.
    pub fn new(standing: watch::Receiver<Standing>) -> Self {
        let (admissions_tx, admissions_rx) = mpsc::channel(64);
        let (inbox_tx, inbox) = mpsc::channel(INBOX_CAPACITY);
        Self {
            nodes: BTreeMap::new(),
            admissions_rx,
            admissions_tx,
            inbox_tx,
            inbox,
            next_connection: 0,
            standing,
            ever_joined: Default::default(),
        }
    }

    /// A handle through which other tasks hand over new links.
    pub fn admissions(&self) -> Admissions {
        Admissions {
            tx: self.admissions_tx.clone(),
        }
    }

    /// Merchants connected now, in id order.
    pub fn connected(&self) -> Vec<MerchantId> {
        self.nodes.keys().cloned().collect()
    }

    /// Number of merchants connected now.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node is connected.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// True when every node that ever joined this roster is connected now.
    pub fn all_known_connected(&self) -> bool {
        self.ever_joined.iter().all(|m| self.nodes.contains_key(m))
    }

    /// True when `merchant` is connected now.
    pub fn contains(&self, merchant: &str) -> bool {
        self.nodes.contains_key(merchant)
    }

    /// Queues `message` for `merchant`. Returns false (and drops the node) when its
    /// writer is gone; waits while its outbox is full.
    pub async fn send(&mut self, merchant: &str, message: Arc<Message>) -> bool {
        let Some(node) = self.nodes.get(merchant) else {
            return false;
        };
        if node.outbox.send(message).await.is_ok() {
            return true;
        }
        self.nodes.remove(merchant);
        false
    }

    /// Waits for the next event until `deadline`; `None` when the deadline passed.
    pub async fn next_event(&mut self, deadline: Instant) -> Option<RosterEvent> {
        loop {
            let step = tokio::select! {
                biased;
                inbound = self.inbox.recv() => Step::Inbound(inbound),
                link = self.admissions_rx.recv() => Step::Admit(link),
                () = tokio::time::sleep_until(deadline) => return None,
            };
            match step {
                Step::Admit(Some(admission)) => self.start_link(admission),
                Step::Admit(None) => {}
                Step::Inbound(Some(inbound)) => {
                    if let Some(event) = self.settle(inbound) {
                        return Some(event);
                    }
                }
                // Unreachable while `self.inbox_tx` lives; treat as a quiet wait.
                Step::Inbound(None) => {}
            }
        }
    }

    /// Turns a task's report into an event, dropping reports from superseded connections.
    fn settle(&mut self, inbound: Inbound) -> Option<RosterEvent> {
        let Inbound {
            merchant,
            connection,
            news,
        } = inbound;
        let current = self.nodes.get(&merchant).map(|n| n.connection);
        if current != Some(connection) {
            return None;
        }
        match news {
            News::Greeted => {
                self.ever_joined.insert(merchant.clone());
                Some(RosterEvent::Joined(merchant))
            }
            News::Said(message) => Some(RosterEvent::Said(merchant, message)),
            News::Gone(reason) => {
                self.nodes.remove(&merchant);
                info!(%merchant, %reason, "node left");
                Some(RosterEvent::Left(merchant, reason))
            }
        }
    }

    /// Registers the link and spawns its task (hello if needed, writer, reader).
    fn start_link(&mut self, admission: Admission) {
        let (link, greeted) = match admission {
            Admission::Greeted(link) => (link, true),
            Admission::Fresh(link) => (link, false),
        };
        let merchant = link.merchant().clone();
        self.next_connection += 1;
        let connection = self.next_connection;
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
        if let Some(old) = self
            .nodes
            .insert(merchant.clone(), Connected { connection, outbox })
        {
            // A reconnect: the old writer ends when its outbox sender is dropped here.
            debug!(%merchant, old = old.connection, new = connection, "node reconnected");
        }
        let inbox = self.inbox_tx.clone();
        let standing = (!greeted).then(|| *self.standing.borrow());
        tokio::spawn(run_link(link, connection, outbox_rx, inbox, standing));
    }
}

enum Step {
    Inbound(Option<Inbound>),
    Admit(Option<Admission>),
}

/// Runs one connection: the hello (unless `standing` is `None`: greeted already), then
/// a writer and a reader until either ends.
async fn run_link(
    mut link: Link,
    connection: u64,
    outbox: mpsc::Receiver<Arc<Message>>,
    inbox: mpsc::Sender<Inbound>,
    standing: Option<Standing>,
) {
    let merchant = link.merchant().clone();
    let report = |news| Inbound {
        merchant: merchant.clone(),
        connection,
        news,
    };

    if let Some(standing) = standing {
        if let Err(e) = greet(&mut link, standing, HELLO_TIMEOUT).await {
            warn!(%merchant, peer = ?link.remote_address(), reason = %e, "hello refused");
            let _ = inbox.send(report(News::Gone(e.to_string()))).await;
            link.close(CloseCode::ProtocolViolation, &e.to_string())
                .await;
            return;
        }
    }
    if inbox.send(report(News::Greeted)).await.is_err() {
        return;
    }

    let (sender, mut receiver) = link.split();
    let writer = tokio::spawn(write_outbox(sender, outbox));
    let reason = loop {
        match receiver.recv().await {
            Ok(message) => {
                if inbox.send(report(News::Said(message))).await.is_err() {
                    break "the aggregator is shutting down".to_string();
                }
            }
            Err(e) => break e.to_string(),
        }
    };
    writer.abort();
    let _ = inbox.send(report(News::Gone(reason))).await;
}

async fn write_outbox(
    mut sender: hansa_protocol::LinkSender,
    mut outbox: mpsc::Receiver<Arc<Message>>,
) {
    while let Some(message) = outbox.recv().await {
        if let Err(e) = sender.send(&message).await {
            debug!(merchant = %sender.merchant(), error = %e, "send failed; closing the link");
            sender.close(CloseCode::Done, "send failed").await;
            return;
        }
    }
}
