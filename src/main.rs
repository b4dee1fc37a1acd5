//! The `noctua` node. Its command line and terminal arrive with the node issue;
//! for now it only proves the workspace builds.

fn main() {
    println!("noctua {}", env!("CARGO_PKG_VERSION"));
}
