//! `stowage view` in a real terminal: tmux at 80 columns, the screen read back with
//! `capture-pane`: the node view of the live cluster (bars, decisions, pools), coloured because
//! it is a terminal, redrawn when the cluster changes.

mod support;

use std::process::Command;
use std::time::Duration;
use stowage::demo::NodeJson;
use support::{ControlPlane, free_port, wait_until};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (Debian package tmux)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", "view"];
        if escapes {
            args.push("-e");
        }
        self.run(&args)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn the_view_fits_an_80_column_terminal_and_follows_the_cluster() {
    let cp = ControlPlane::shared();
    // view-0 busy (75 % of its cpu, do-not-disrupt), one web replica on each of view-1 and
    // view-2: the plan moves them onto view-0.
    let _ns = support::workload::fragmented(cp, "view");

    let tmux = Tmux {
        socket: format!("stowage-view-{}", free_port()),
    };
    let command = format!(
        "{} view --interval 1s --kubeconfig {}",
        env!("CARGO_BIN_EXE_stowage"),
        cp.kubeconfig.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "view",
        "-x",
        "80",
        "-y",
        "40",
        "-e",
        "TERM=xterm-256color",
        &command,
    ]);
    wait_until("the view drawn", Duration::from_secs(30), || {
        tmux.screen(false).contains("view-2")
    });
    let screen = tmux.screen(false);
    for line in screen.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than the terminal: {line:?}"
        );
    }
    assert!(screen.contains("stowage view · "), "{screen}");
    // Grouped by pool: these nodes carry none of the pool labels (Karpenter's, EKS's, …).
    assert!(
        screen.contains("(no pool label): 3 nodes → 1, cpu "),
        "{screen}"
    );
    assert!(screen.contains("NODE") && screen.contains("CPU") && screen.contains("MEMORY"));
    // view-0 is 75 % requested: seven of ten cells (a cell counts when its middle is below),
    // and the two replicas arrive.
    let busy = screen
        .lines()
        .find(|l| l.starts_with("view-0"))
        .expect("view-0 drawn");
    assert!(
        busy.starts_with("view-0           ███████▓▓░  75%→88%"),
        "{busy}"
    );
    // view-1's replica fits on view-0: the plan drains view-1, and its cells leave; view-0
    // receives.
    let thin = screen.lines().find(|l| l.starts_with("view-1")).unwrap();
    assert!(thin.contains("drain →1") && thin.contains('▒'), "{thin}");
    assert!(busy.contains('▓') && busy.contains("NotIdle +2"), "{busy}");
    assert!(
        screen.contains("█ requested ▓ arriving ▒ leaving ░ free"),
        "{screen}"
    );
    // A terminal gets colours.
    assert!(
        tmux.screen(true).contains("\u{1b}["),
        "no colour on a terminal"
    );

    // The cluster changes; the next frame shows it.
    cp.apply_objects(vec![
        NodeJson::new("view-3")
            .kwok()
            .label("pool", "view")
            .resources("8", "32Gi", "110")
            .build(),
    ]);
    wait_until("the new node drawn", Duration::from_secs(30), || {
        let s = tmux.screen(false);
        s.contains("view-3") && s.contains("(no pool label): 4 nodes → ")
    });
}
