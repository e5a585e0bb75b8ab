pub(crate) struct MemoryStore; impl MemoryStore { pub(crate) fn new() -> Self { MemoryStore } }
