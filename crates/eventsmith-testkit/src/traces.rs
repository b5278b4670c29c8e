//! A small collecting [`tracing::Subscriber`] for tests that assert the spans and events a
//! store emits (`docs/observability.md`). Hand-written rather than `tracing-subscriber`, so
//! that the tests need no dependency beyond `tracing` itself.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;

/// A span as it was closed (or still is): its name and fields, values in their `Debug` form
/// (strings unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// The span's name (`eventsmith.append`, …).
    pub name: &'static str,
    /// Its fields as recorded, late ones included.
    pub fields: BTreeMap<String, String>,
}

/// An event: its level, message and other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// The event's level.
    pub level: tracing::Level,
    /// Its fields, `message` among them.
    pub fields: BTreeMap<String, String>,
    /// The name of the innermost span it was emitted in, if any.
    pub span: Option<&'static str>,
}

#[derive(Default)]
struct State {
    next: u64,
    spans: HashMap<u64, (&'static Metadata<'static>, SpanRecord)>,
    order: Vec<u64>,
    events: Vec<EventRecord>,
}

/// Records every span and event, at every level. Cheap to clone: clones share the records.
#[derive(Clone, Default)]
pub struct Collector {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

thread_local! {
    // Entered spans per thread, innermost last: what `Span::current` answers.
    static STACK: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Collector {
    /// A collector with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every span created so far, in creation order.
    pub fn spans(&self) -> Vec<SpanRecord> {
        let state = self.state();
        state
            .order
            .iter()
            .map(|id| state.spans[id].1.clone())
            .collect()
    }

    /// The spans named `name`, in creation order.
    pub fn spans_named(&self, name: &str) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<EventRecord> {
        self.state().events.clone()
    }

    /// The events whose message contains `text`.
    pub fn events_saying(&self, text: &str) -> Vec<EventRecord> {
        self.events()
            .into_iter()
            .filter(|e| e.fields.get("message").is_some_and(|m| m.contains(text)))
            .collect()
    }

    /// Forgets everything recorded so far (spans still open keep being recorded).
    pub fn clear(&self) {
        let mut state = self.state();
        state.order.clear();
        state.events.clear();
    }
}

impl Subscriber for Collector {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut state = self.state();
        state.next += 1;
        let id = state.next;
        let record = SpanRecord {
            name: attrs.metadata().name(),
            fields,
        };
        state.spans.insert(id, (attrs.metadata(), record));
        state.order.push(id);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some((_, record)) = self.state().spans.get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut record.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let current = STACK.with(|s| s.borrow().last().map(Id::into_u64));
        let mut state = self.state();
        let span = current
            .and_then(|id| state.spans.get(&id))
            .map(|(_, r)| r.name);
        state.events.push(EventRecord {
            level: *event.metadata().level(),
            fields,
            span,
        });
    }

    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.clone()));
    }

    fn exit(&self, span: &Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(i) = s.iter().rposition(|e| e == span) {
                s.remove(i);
            }
        });
    }

    fn current_span(&self) -> Current {
        let current = STACK.with(|s| s.borrow().last().cloned());
        match current {
            Some(id) => match self.state().spans.get(&id.into_u64()) {
                Some((meta, _)) => Current::new(id, meta),
                None => Current::none(),
            },
            None => Current::none(),
        }
    }
}

/// Checks the spans every backend records (`docs/observability.md`) for an append of two
/// items, a conflicting append, a select and a notification page, as `collector` saw them.
/// The collector must be the subscriber of the calling thread (or the global one).
pub async fn check_store_spans<S: eventsmith_core::ItemStore>(
    store: &S,
    collector: &Collector,
    backend: &str,
) {
    use eventsmith_core::{AppendError, Select, SequencedItem};
    let id = uuid::Uuid::new_v4();
    let item = |position| SequencedItem {
        sequence_id: id,
        position,
        topic: "t".to_owned(),
        payload: vec![1],
    };
    let one = |name: &str| {
        let spans = collector.spans_named(name);
        assert_eq!(spans.len(), 1, "one {name} span: {:?}", collector.spans());
        spans[0].fields.clone()
    };

    collector.clear();
    store.append(vec![item(1), item(2)]).await.unwrap();
    let f = one("eventsmith.append");
    assert_eq!(f["backend"], backend);
    assert_eq!(f["items"], "2");
    assert_eq!(f["sequence_id"], id.to_string());
    assert_eq!(f["position"], "1");
    assert_eq!(f["keyed"], "false");
    assert_eq!(f["outcome"], "ok");

    collector.clear();
    let e = store.append(vec![item(2)]).await.unwrap_err();
    assert!(matches!(e, AppendError::Conflict { .. }), "{e:?}");
    assert_eq!(one("eventsmith.append")["outcome"], "conflict");

    collector.clear();
    let rows = store.select(id, &Select::all()).await.unwrap();
    let f = one("eventsmith.select");
    assert_eq!(f["items"], rows.len().to_string());
    assert_eq!(f["outcome"], "ok");

    if store.capabilities().notifications == eventsmith_core::Support::Yes {
        collector.clear();
        let page = store.select_notifications(1, 10, &[]).await.unwrap();
        let f = one("eventsmith.notifications");
        assert_eq!((f["after"].as_str(), f["limit"].as_str()), ("1", "10"));
        assert_eq!(f["items"], page.len().to_string());
    }
}
