"""What every stage runs on, whatever it computes: atomic writes and manifests (``artifacts``), the
local stage cache (``cache``), CPU threads (``compute``), NaN-free figures (``finite``), progress
lines (``progress``), seeds (``seeding``) and the object store (``storage``)."""
