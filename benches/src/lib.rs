//! Criterion micro-benchmarks of vipgate's hot functions live in `benches/`; results and
//! how to reproduce them are in `benches/README.md`.
