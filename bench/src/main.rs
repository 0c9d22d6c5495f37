//! torpor-bench: placeholder until the suite lands.
fn main() {}
