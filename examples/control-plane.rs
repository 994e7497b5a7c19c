//! Starts the test control plane by hand, for debugging:
//! `cargo run --example control-plane` (or `tests/harness/up.sh`). Prints the admin kubeconfig
//! path, then keeps everything running until Enter is pressed or stdin closes; all processes
//! stop when this program exits, however it exits.

#[path = "../tests/support/mod.rs"]
mod support;

fn main() {
    let cp = support::ControlPlane::start();
    println!("{}", cp.kubeconfig.display());
    eprintln!(
        "export KUBECONFIG={}   # binaries: {}   logs: {}\npress Enter to stop",
        cp.kubeconfig.display(),
        cp.bin.display(),
        cp.dir.0.display()
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}
