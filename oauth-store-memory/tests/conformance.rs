//! The oauth-core store conformance kit, run against the memory store.

oauth_core::store_conformance_tests!(async { oauth_store_memory::MemoryStore::new().into_stores() });
