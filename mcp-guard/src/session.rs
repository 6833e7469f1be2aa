//! MCP sessions: who owns each one, and how many there may be.
//!
//! A Streamable HTTP server (MCP revisions before 2026-07-28) answers `initialize` with an
//! `Mcp-Session-Id`, and every later request of that client carries it. The id says which
//! session, not who may use it: without a binding, anyone with any valid token who learns an id
//! drives that session. And every `initialize` opens a session that holds memory until it is
//! idle long enough, so one valid token can open them until the server runs out of memory.
//!
//! So the guard binds each session id that the inner service returns to the caller (subject and
//! client) of the token that created it, refuses a request that carries an id with a token of
//! another caller, or an id it does not know, with `404` (what Streamable HTTP answers for an
//! unknown session, so a client starts a new one), and bounds the sessions: at most
//! [`SessionLimits::per_caller`] for one caller and [`SessionLimits::total`] in all. When a new
//! session would pass a bound, the least recently used one goes first; a session unused for
//! [`SessionLimits::idle_timeout`] goes too. The guard ends an evicted session in the inner
//! service by sending it a `DELETE` with that `Mcp-Session-Id`, which rmcp's
//! `StreamableHttpService` answers by closing the session.
//!
//! Bindings live in the guard's memory: behind several replicas, route a session's requests to
//! the replica that created it (sticky sessions), as rmcp's in-memory sessions need anyway.
//!
//! ```
//! use std::time::Duration;
//! use mcp_guard::SessionLimits;
//!
//! let limits = SessionLimits::default().with_per_caller(4).with_idle_timeout(Duration::from_secs(300));
//! assert_eq!((limits.per_caller, limits.total), (4, 10_000));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri, header};

use crate::AuthContext;

/// The header that names a Streamable HTTP session.
pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
/// Longest session id the guard binds; rmcp's are UUIDs (36 bytes).
const MAX_SESSION_ID_LEN: usize = 256;

/// Bounds on the MCP sessions the guard lets the inner service keep.
///
/// The defaults: 16 sessions per caller (a subject through one client), 10 000 in all, and 10
/// minutes of idleness. A client holds one session at a time; 16 leaves room for reconnects
/// whose old session has not ended yet and for several windows of one client, while a flood of
/// `initialize` from one token keeps only its 16 newest sessions. 10 000 sessions of rmcp's
/// size stay within a few hundred MiB, and take 625 callers at their bound to fill. Ten minutes
/// outlasts the pauses between a person's tool calls; give rmcp's own session keep-alive the
/// same value (`LocalSessionManager`'s `session_config.keep_alive`), so that neither side keeps
/// a session the other has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionLimits {
    /// Most sessions of one caller (subject and client). Default 16.
    pub per_caller: usize,
    /// Most sessions in all. Default 10 000.
    pub total: usize,
    /// A session unused for this long is ended. Default 10 minutes.
    pub idle_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self { per_caller: 16, total: 10_000, idle_timeout: Duration::from_secs(600) }
    }
}

impl SessionLimits {
    /// Most sessions of one caller (at least 1). Default 16. A higher bound lets one token hold
    /// more of the server's memory.
    #[must_use]
    pub fn with_per_caller(mut self, n: usize) -> Self {
        self.per_caller = n.max(1);
        self
    }

    /// Most sessions in all (at least 1). Default 10 000. Each rmcp session holds a task and its
    /// buffers until it ends.
    #[must_use]
    pub fn with_total(mut self, n: usize) -> Self {
        self.total = n.max(1);
        self
    }

    /// How long an unused session lives (at least 1 s). Default 10 minutes. Longer keeps idle
    /// sessions, and their memory, longer.
    #[must_use]
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle.max(Duration::from_secs(1));
        self
    }
}

/// Who a session belongs to: the token's subject and client. The one place that says what a
/// session is keyed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    subject: Box<str>,
    client: Box<str>,
}

impl Owner {
    pub(crate) fn describe(&self) -> String {
        format!("subject '{}' through client '{}'", self.subject, self.client)
    }
}

/// The owner of sessions created with `ctx`'s token.
pub(crate) fn owner_of(ctx: &AuthContext) -> Owner {
    Owner { subject: ctx.subject.as_str().into(), client: ctx.client_id.as_str().into() }
}

/// Where to send the `DELETE` that ends a session: the path and `Host` of the request that
/// created it (the inner service may check the host, as rmcp does against DNS rebinding).
#[derive(Debug, Clone)]
pub(crate) struct Route {
    uri: Uri,
    host: Option<HeaderValue>,
}

impl Route {
    pub(crate) fn of<B>(req: &Request<B>) -> Self {
        Self { uri: req.uri().clone(), host: req.headers().get(header::HOST).cloned() }
    }
}

/// A session the guard ended, to be closed in the inner service.
#[derive(Debug)]
pub(crate) struct Evicted {
    id: Box<str>,
    route: Route,
}

impl Evicted {
    /// The `DELETE` that ends the session in a Streamable HTTP service. It names no protocol
    /// version, so rmcp takes it for the session protocol (before 2026-07-28) that sessions use.
    pub(crate) fn delete_request<B: From<Bytes>>(&self) -> Option<Request<B>> {
        let mut b = Request::builder().method(Method::DELETE).uri(self.route.uri.clone());
        if let Some(host) = &self.route.host {
            b = b.header(header::HOST, host.clone());
        }
        b.header(SESSION_HEADER, HeaderValue::from_str(&self.id).ok()?).body(B::from(Bytes::new())).ok()
    }
}

/// What the table says of a session id a request carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The caller's own session (now marked as used).
    Yours,
    /// Another caller's session.
    NotYours(Owner),
    /// Not a session the guard knows (or it was idle too long).
    Unknown,
}

/// The bindings, with the sessions ended but not yet closed in the inner service.
#[derive(Debug)]
pub(crate) struct Sessions {
    limits: SessionLimits,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<Box<str>, Entry>,
    /// Each owner's sessions by last use.
    by_owner: HashMap<Owner, BTreeMap<u64, Box<str>>>,
    /// Every session by last use: the least recently used first.
    by_use: BTreeMap<u64, Box<str>>,
    /// Stamps uses in order.
    counter: u64,
    /// Ended sessions to close in the inner service.
    evicted: Vec<Evicted>,
}

#[derive(Debug)]
struct Entry {
    owner: Owner,
    stamp: u64,
    last_used: i64,
    route: Route,
}

impl Sessions {
    pub(crate) fn new(limits: SessionLimits) -> Self {
        Self { limits, table: Mutex::new(Table::default()) }
    }

    pub(crate) fn limits(&self) -> SessionLimits {
        self.limits
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whose session `id` is, as seen by `owner` at `now` (seconds); marks it used when it is
    /// the owner's.
    pub(crate) fn lookup(&self, id: &str, owner: &Owner, now: i64) -> Lookup {
        let mut t = self.table();
        t.sweep(self.idle_secs(), now);
        let Some(entry) = t.by_id.get(id) else {
            return Lookup::Unknown;
        };
        if &entry.owner != owner {
            return Lookup::NotYours(entry.owner.clone());
        }
        t.touch(id, now);
        Lookup::Yours
    }

    /// Binds a session the inner service created for `owner`, ending the least recently used
    /// ones past the bounds. An id already bound keeps its owner.
    pub(crate) fn bind(&self, id: &str, owner: Owner, route: Route, now: i64) {
        if id.is_empty() || id.len() > MAX_SESSION_ID_LEN {
            tracing::warn!(len = id.len(), "the MCP service returned a session id the guard does not bind");
            return;
        }
        let mut t = self.table();
        t.sweep(self.idle_secs(), now);
        if t.by_id.contains_key(id) {
            if t.by_id.get(id).is_some_and(|e| e.owner == owner) {
                t.touch(id, now);
            }
            return;
        }
        while t.by_owner.get(&owner).is_some_and(|s| s.len() >= self.limits.per_caller) {
            let Some(oldest) = t.by_owner.get(&owner).and_then(|s| s.values().next().cloned()) else { break };
            t.evict(&oldest);
        }
        while t.by_id.len() >= self.limits.total {
            let Some(oldest) = t.by_use.values().next().cloned() else { break };
            t.evict(&oldest);
        }
        t.counter += 1;
        let stamp = t.counter;
        let id: Box<str> = id.into();
        t.by_use.insert(stamp, id.clone());
        t.by_owner.entry(owner.clone()).or_default().insert(stamp, id.clone());
        t.by_id.insert(id, Entry { owner, stamp, last_used: now, route });
    }

    /// Forgets a session the inner service has ended (the client's `DELETE`, or a `404`).
    pub(crate) fn forget(&self, id: &str) {
        self.table().remove(id);
    }

    /// The ended sessions not yet closed in the inner service.
    pub(crate) fn take_evicted(&self) -> Vec<Evicted> {
        std::mem::take(&mut self.table().evicted)
    }

    /// How many sessions are bound, in all and for `owner`.
    #[cfg(test)]
    fn counts(&self, owner: &Owner) -> (usize, usize) {
        let t = self.table();
        (t.by_id.len(), t.by_owner.get(owner).map_or(0, BTreeMap::len))
    }

    fn idle_secs(&self) -> i64 {
        i64::try_from(self.limits.idle_timeout.as_secs()).unwrap_or(i64::MAX)
    }
}

impl Table {
    /// Ends every session unused for `idle` seconds at `now`: the least recently used first,
    /// so it stops at the first one still in use.
    fn sweep(&mut self, idle: i64, now: i64) {
        while let Some(oldest) = self.by_use.values().next().cloned() {
            if self.by_id.get(&oldest).is_some_and(|e| now.saturating_sub(e.last_used) < idle) {
                break;
            }
            self.evict(&oldest);
        }
    }

    fn touch(&mut self, id: &str, now: i64) {
        self.counter += 1;
        let stamp = self.counter;
        let Some(e) = self.by_id.get_mut(id) else { return };
        let old = std::mem::replace(&mut e.stamp, stamp);
        e.last_used = now;
        let owner = e.owner.clone();
        if let Some(id) = self.by_use.remove(&old) {
            self.by_use.insert(stamp, id);
        }
        if let Some(s) = self.by_owner.get_mut(&owner)
            && let Some(id) = s.remove(&old)
        {
            s.insert(stamp, id);
        }
    }

    fn remove(&mut self, id: &str) -> Option<(Box<str>, Entry)> {
        let (id, e) = self.by_id.remove_entry(id)?;
        self.by_use.remove(&e.stamp);
        if let Some(s) = self.by_owner.get_mut(&e.owner) {
            s.remove(&e.stamp);
            if s.is_empty() {
                self.by_owner.remove(&e.owner);
            }
        }
        Some((id, e))
    }

    fn evict(&mut self, id: &str) {
        if let Some((id, e)) = self.remove(id) {
            self.evicted.push(Evicted { id, route: e.route });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(s: &str, c: &str) -> Owner {
        Owner { subject: s.into(), client: c.into() }
    }

    fn route() -> Route {
        Route { uri: Uri::from_static("/mcp"), host: Some(HeaderValue::from_static("127.0.0.1")) }
    }

    fn evicted_ids(s: &Sessions) -> Vec<String> {
        s.take_evicted().into_iter().map(|e| e.id.into()).collect()
    }

    #[test]
    fn a_session_is_its_creators_only() {
        let s = Sessions::new(SessionLimits::default());
        let (alice, bob, alice_elsewhere) = (owner("alice", "c1"), owner("bob", "c1"), owner("alice", "c2"));
        s.bind("s1", alice.clone(), route(), 0);
        assert_eq!(s.lookup("s1", &alice, 1), Lookup::Yours);
        assert_eq!(s.lookup("s1", &bob, 1), Lookup::NotYours(alice.clone()));
        assert_eq!(s.lookup("s1", &alice_elsewhere, 1), Lookup::NotYours(alice.clone()));
        assert_eq!(s.lookup("s2", &alice, 1), Lookup::Unknown);
        // An id the service hands out again keeps its first owner.
        s.bind("s1", bob.clone(), route(), 2);
        assert_eq!(s.lookup("s1", &bob, 2), Lookup::NotYours(alice));
    }

    #[test]
    fn one_caller_keeps_its_newest_sessions_and_the_least_recently_used_goes() {
        let s = Sessions::new(SessionLimits::default().with_per_caller(3));
        let (alice, bob) = (owner("alice", "c1"), owner("bob", "c1"));
        s.bind("bob-1", bob.clone(), route(), 0);
        for (i, id) in ["a1", "a2", "a3"].into_iter().enumerate() {
            s.bind(id, alice.clone(), route(), i as i64);
        }
        // a1 was used last: a2 is now the least recently used.
        assert_eq!(s.lookup("a1", &alice, 5), Lookup::Yours);
        s.bind("a4", alice.clone(), route(), 6);
        assert_eq!(evicted_ids(&s), ["a2"]);
        s.bind("a5", alice.clone(), route(), 7);
        assert_eq!(evicted_ids(&s), ["a3"]);
        assert_eq!(s.counts(&alice), (4, 3));
        assert_eq!(s.lookup("a2", &alice, 8), Lookup::Unknown);
        // Another caller's session is untouched.
        assert_eq!(s.lookup("bob-1", &bob, 8), Lookup::Yours);
    }

    #[test]
    fn the_total_bound_ends_the_least_recently_used_of_anyone() {
        let s = Sessions::new(SessionLimits::default().with_total(2));
        s.bind("x", owner("a", "c"), route(), 0);
        s.bind("y", owner("b", "c"), route(), 1);
        assert_eq!(s.lookup("x", &owner("a", "c"), 2), Lookup::Yours);
        s.bind("z", owner("c", "c"), route(), 3);
        assert_eq!(evicted_ids(&s), ["y"]);
        assert_eq!(s.counts(&owner("a", "c")).0, 2);
    }

    #[test]
    fn idle_sessions_end() {
        let s = Sessions::new(SessionLimits::default().with_idle_timeout(Duration::from_secs(600)));
        let a = owner("a", "c");
        s.bind("old", a.clone(), route(), 0);
        s.bind("used", a.clone(), route(), 0);
        assert_eq!(s.lookup("used", &a, 500), Lookup::Yours);
        assert_eq!(s.lookup("used", &a, 1000), Lookup::Yours);
        assert_eq!(evicted_ids(&s), ["old"]);
        assert_eq!(s.lookup("old", &a, 1000), Lookup::Unknown);
        assert_eq!(s.lookup("used", &a, 1600), Lookup::Unknown);
        assert_eq!(evicted_ids(&s), ["used"]);
    }

    #[test]
    fn the_delete_names_the_session_and_the_creating_host() {
        let e = Evicted { id: "abc".into(), route: route() };
        let req: Request<Bytes> = e.delete_request().unwrap();
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(req.uri(), "/mcp");
        assert_eq!(req.headers()[SESSION_HEADER], "abc");
        assert_eq!(req.headers()[header::HOST], "127.0.0.1");
        assert!(req.headers().get("mcp-protocol-version").is_none());
    }

    #[test]
    fn limits_have_floors() {
        let l = SessionLimits::default().with_per_caller(0).with_total(0).with_idle_timeout(Duration::ZERO);
        assert_eq!((l.per_caller, l.total, l.idle_timeout), (1, 1, Duration::from_secs(1)));
    }
}
