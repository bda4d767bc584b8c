//! An event bus inside the process: the outbox relay publishes into a
//! bounded queue per gateway node, routed by the labels the node bound, as
//! a direct exchange would. Deliveries are acked as on a broker: one that
//! is not acked before its subscription ends is delivered again.
//!
//! A queue that is full drops what comes next and tells its consumer so,
//! which then reconciles: nothing is lost, because the outbox is durable
//! and every node compares itself with the desired state (at start-up,
//! after a gap, and every reconcile interval).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use artisync_domain::event::DeploymentEvent;
use artisync_domain::{GatewayLabel, NodeId};
use artisync_ports::bus::{
    Acker, BusError, Delivery, EventPublisher, EventSubscriber, Incoming, Subscription,
};
use artisync_ports::outbox::OutboundEvent;
use async_trait::async_trait;
use tokio::sync::Notify;

/// One message as a queue holds it.
#[derive(Debug, Clone)]
struct Message {
    message_id: String,
    payload: Arc<[u8]>,
    traceparent: Option<String>,
}

#[derive(Default)]
struct QueueState {
    /// Cut off from its consumer (a simulated broker outage): deliveries
    /// wait in the queue, subscriptions end and cannot start.
    cut: bool,
    /// Bumped by every cut, so that a subscription from before a cut ends.
    epoch: u64,
    ready: VecDeque<(u64, Message)>,
    unacked: BTreeMap<u64, Message>,
    next_tag: u64,
    /// Messages dropped because the queue was full, not yet told to the
    /// consumer.
    dropped: u64,
    dead_lettered: u64,
}

struct NodeQueue {
    state: Mutex<QueueState>,
    /// Woken on every publish, ack and requeue.
    changed: Notify,
    capacity: usize,
}

impl NodeQueue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts what was delivered but not acked back at the head, in order.
    fn requeue_unacked(&self) {
        let mut state = self.state();
        let unacked = std::mem::take(&mut state.unacked);
        for (tag, message) in unacked.into_iter().rev() {
            state.ready.push_front((tag, message));
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

#[derive(Default)]
struct Routes {
    /// Label to the nodes whose queues are bound to it.
    bindings: HashMap<String, Vec<String>>,
    queues: HashMap<String, Arc<NodeQueue>>,
}

/// What a queue holds, for tests and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    pub ready: usize,
    pub unacked: usize,
    pub dropped: u64,
    pub dead_lettered: u64,
}

/// The bus: clone it into the relay (as [`EventPublisher`]) and into each
/// gateway node (as [`EventSubscriber`]).
#[derive(Clone)]
pub struct InProcessBus {
    routes: Arc<Mutex<Routes>>,
    capacity: usize,
}

impl InProcessBus {
    /// Each node's queue holds at most `capacity` messages, delivered or not.
    pub fn new(capacity: usize) -> Self {
        InProcessBus {
            routes: Arc::new(Mutex::new(Routes::default())),
            capacity: capacity.max(1),
        }
    }

    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, node: &str) -> Arc<NodeQueue> {
        self.routes()
            .queues
            .entry(node.to_owned())
            .or_insert_with(|| {
                Arc::new(NodeQueue {
                    state: Mutex::new(QueueState::default()),
                    changed: Notify::new(),
                    capacity: self.capacity,
                })
            })
            .clone()
    }

    /// Drops every message waiting in a node's queue, as a lost event.
    pub fn purge(&self, node: &NodeId) -> usize {
        let queue = self.queue(node.as_str());
        let mut state = queue.state();
        let n = state.ready.len();
        state.ready.clear();
        n
    }

    /// Cuts a node off, as a broker outage would: its subscription ends,
    /// new ones are refused, and what is published for it waits (until
    /// the queue is full).
    pub fn cut(&self, node: &NodeId) {
        let queue = self.queue(node.as_str());
        let mut state = queue.state();
        state.cut = true;
        state.epoch += 1;
        drop(state);
        queue.changed.notify_waiters();
    }

    /// Ends a [`InProcessBus::cut`]: the node can subscribe again.
    pub fn heal(&self, node: &NodeId) {
        let queue = self.queue(node.as_str());
        queue.state().cut = false;
        queue.changed.notify_waiters();
    }

    pub fn stats(&self, node: &NodeId) -> BusStats {
        let queue = self.queue(node.as_str());
        let state = queue.state();
        BusStats {
            ready: state.ready.len(),
            unacked: state.unacked.len(),
            dropped: state.dropped,
            dead_lettered: state.dead_lettered,
        }
    }

    /// Hands one message to every queue bound to `routing_key`.
    pub fn route(
        &self,
        routing_key: &str,
        message_id: String,
        payload: &[u8],
        traceparent: Option<String>,
    ) {
        let queues: Vec<Arc<NodeQueue>> = {
            let routes = self.routes();
            routes
                .bindings
                .get(routing_key)
                .into_iter()
                .flatten()
                .filter_map(|node| routes.queues.get(node).cloned())
                .collect()
        };
        if queues.is_empty() {
            return;
        }
        let message = Message {
            message_id,
            payload: Arc::from(payload),
            traceparent,
        };
        for queue in queues {
            let mut state = queue.state();
            if state.ready.len() + state.unacked.len() >= queue.capacity {
                state.dropped += 1;
            } else {
                let tag = state.next_tag;
                state.next_tag += 1;
                state.ready.push_back((tag, message.clone()));
            }
            drop(state);
            queue.changed.notify_waiters();
        }
    }
}

#[async_trait]
impl EventPublisher for InProcessBus {
    async fn publish(&mut self, events: &[OutboundEvent]) -> Result<(), BusError> {
        for event in events {
            self.route(
                &event.routing_key,
                event.event_id.to_string(),
                &event.payload,
                event.traceparent.clone(),
            );
        }
        Ok(())
    }
}

#[async_trait]
impl EventSubscriber for InProcessBus {
    async fn subscribe(
        &self,
        node: &NodeId,
        labels: &[GatewayLabel],
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let queue = self.queue(node.as_str());
        let epoch = {
            let state = queue.state();
            if state.cut {
                return Err(BusError::new(format!("the bus is cut off from {node}")));
            }
            state.epoch
        };
        {
            let mut routes = self.routes();
            for label in labels {
                let nodes = routes
                    .bindings
                    .entry(label.as_str().to_owned())
                    .or_default();
                if !nodes.iter().any(|n| n == node.as_str()) {
                    nodes.push(node.as_str().to_owned());
                }
            }
        }
        Ok(Box::new(InProcessSubscription {
            queue,
            prefetch: usize::from(prefetch.max(1)),
            epoch,
        }))
    }

    fn queue_name(&self, node: &NodeId) -> String {
        format!("in-process queue of {node}")
    }
}

struct InProcessBacklog(Arc<NodeQueue>);

#[async_trait]
impl artisync_ports::bus::QueueBacklog for InProcessBacklog {
    async fn waiting(&self) -> Result<u64, BusError> {
        Ok(self.0.state().ready.len() as u64)
    }
}

struct InProcessSubscription {
    queue: Arc<NodeQueue>,
    prefetch: usize,
    /// The queue's epoch when subscribed; a cut since ends the subscription.
    epoch: u64,
}

#[async_trait]
impl Subscription for InProcessSubscription {
    fn backlog(&self) -> Option<Box<dyn artisync_ports::bus::QueueBacklog>> {
        Some(Box::new(InProcessBacklog(Arc::clone(&self.queue))))
    }

    async fn next(&mut self) -> Option<Incoming> {
        loop {
            // Registered before looking, so a publish in between wakes us.
            let changed = self.queue.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.queue.state();
                if state.epoch != self.epoch {
                    return None;
                }
                if state.dropped > 0 {
                    let count = std::mem::take(&mut state.dropped);
                    return Some(Incoming::Dropped { count });
                }
                if state.unacked.len() < self.prefetch
                    && let Some((tag, message)) = state.ready.pop_front()
                {
                    state.unacked.insert(tag, message.clone());
                    return Some(Incoming::Delivery(Box::new(Delivery {
                        event: DeploymentEvent::from_json(&message.payload)
                            .map_err(|e| e.to_string()),
                        message_id: Some(message.message_id),
                        traceparent: message.traceparent,
                        ack: Box::new(InProcessAcker {
                            queue: self.queue.clone(),
                            tag,
                        }),
                    })));
                }
            }
            changed.await;
        }
    }

    async fn close(self: Box<Self>) {
        // Drop requeues.
    }
}

impl Drop for InProcessSubscription {
    fn drop(&mut self) {
        self.queue.requeue_unacked();
    }
}

struct InProcessAcker {
    queue: Arc<NodeQueue>,
    tag: u64,
}

impl InProcessAcker {
    fn settle(&self, dead_letter: bool) {
        let mut state = self.queue.state();
        if state.unacked.remove(&self.tag).is_some() && dead_letter {
            state.dead_lettered += 1;
        }
        drop(state);
        self.queue.changed.notify_waiters();
    }
}

#[async_trait]
impl Acker for InProcessAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.settle(false);
        Ok(())
    }

    async fn reject(self: Box<Self>) -> Result<(), BusError> {
        self.settle(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use artisync_domain::event::EventType;
    use artisync_domain::{ApiId, Revision, Sha256Digest};

    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    fn label(l: &str) -> GatewayLabel {
        GatewayLabel::parse(l).unwrap()
    }

    fn event(sequence: i64, routing_key: &str) -> OutboundEvent {
        let e = DeploymentEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: EventType::DeployApiInGateway,
            timestamp: chrono::Utc::now(),
            api_id: ApiId::new_random(),
            name: "A".into(),
            version: String::new(),
            context: "/a".into(),
            revision: Revision::FIRST,
            sha256: Sha256Digest::of(b"a"),
            gateway_labels: vec![label(routing_key)],
            sequence,
            artifact: None,
            signature: None,
        };
        OutboundEvent {
            outbox_id: sequence,
            event_id: e.event_id,
            routing_key: routing_key.into(),
            payload: e.to_json(),
            traceparent: None,
        }
    }

    async fn next_sequence(s: &mut Box<dyn Subscription>) -> (i64, Box<dyn Acker>) {
        match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
            Ok(Some(Incoming::Delivery(d))) => (d.event.unwrap().sequence, d.ack),
            _ => panic!("no delivery"),
        }
    }

    #[tokio::test]
    async fn routes_by_label_and_redelivers_what_was_not_acked() {
        let mut bus = InProcessBus::new(16);
        let mut gw1 = bus
            .subscribe(&node("gw-1"), &[label("L1")], 8)
            .await
            .unwrap();
        let mut gw2 = bus
            .subscribe(&node("gw-2"), &[label("L2")], 8)
            .await
            .unwrap();
        bus.publish(&[event(1, "L1"), event(2, "L2"), event(3, "L1")])
            .await
            .unwrap();
        let (first, ack) = next_sequence(&mut gw1).await;
        assert_eq!(first, 1);
        ack.ack().await.unwrap();
        let (second, _not_acked) = next_sequence(&mut gw1).await;
        assert_eq!(second, 3);
        assert_eq!(next_sequence(&mut gw2).await.0, 2);
        drop(gw1);
        let mut again = bus
            .subscribe(&node("gw-1"), &[label("L1")], 8)
            .await
            .unwrap();
        assert_eq!(next_sequence(&mut again).await.0, 3, "redelivered");
    }

    #[tokio::test]
    async fn a_cut_ends_the_subscription_and_events_wait_for_the_heal() {
        let mut bus = InProcessBus::new(16);
        let mut gw = bus
            .subscribe(&node("gw-1"), &[label("L1")], 8)
            .await
            .unwrap();
        bus.cut(&node("gw-1"));
        assert!(gw.next().await.is_none(), "the subscription ended");
        assert!(
            bus.subscribe(&node("gw-1"), &[label("L1")], 8)
                .await
                .is_err()
        );
        bus.publish(&[event(1, "L1")]).await.unwrap();
        assert_eq!(bus.stats(&node("gw-1")).ready, 1, "it waits");
        bus.heal(&node("gw-1"));
        let mut again = bus
            .subscribe(&node("gw-1"), &[label("L1")], 8)
            .await
            .unwrap();
        assert_eq!(next_sequence(&mut again).await.0, 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_says_so() {
        let mut bus = InProcessBus::new(2);
        let mut gw = bus
            .subscribe(&node("gw-1"), &[label("L1")], 1)
            .await
            .unwrap();
        bus.publish(&[event(1, "L1"), event(2, "L1"), event(3, "L1")])
            .await
            .unwrap();
        assert_eq!(bus.stats(&node("gw-1")).dropped, 1);
        match gw.next().await {
            Some(Incoming::Dropped { count }) => assert_eq!(count, 1),
            _ => panic!("the gap comes first"),
        }
        let (one, ack) = next_sequence(&mut gw).await;
        assert_eq!(one, 1);
        // Prefetch 1: the second waits for the ack.
        let stats = bus.stats(&node("gw-1"));
        assert_eq!((stats.ready, stats.unacked), (1, 1));
        ack.ack().await.unwrap();
        assert_eq!(next_sequence(&mut gw).await.0, 2);
    }
}
