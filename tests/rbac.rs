//! The chart's RBAC rules grant exactly the Kubernetes calls the code makes, both ways, as
//! `tests/iam.rs` checks the IAM policy: every call in `src/` is allowed by the role of the
//! identity that makes it, and the roles grant nothing the code never calls (a verb granted
//! but unused is a verb a stolen token may use).
//!
//! The calls are found by reading the source: a variable, parameter or field of type
//! `Api<T>` and the methods called on it (`get`, `list`, `patch`, …, `watcher(api, …)`), per
//! function; a generic function's `Api<K>` takes the types its callers pass (including the
//! `each_kind!` list of `k8s/watch.rs`). A type the test cannot name a resource for fails the
//! test with what to add, so a new kind cannot slip past it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// (API group, resource) of a typed `Api<T>`.
fn resource_of(ty: &str) -> Option<(&'static str, &'static str)> {
    Some(match ty {
        "Node" => ("", "nodes"),
        "Pod" => ("", "pods"),
        "ConfigMap" => ("", "configmaps"),
        "Namespace" => ("", "namespaces"),
        "PersistentVolumeClaim" => ("", "persistentvolumeclaims"),
        "PersistentVolume" => ("", "persistentvolumes"),
        "PodDisruptionBudget" => ("policy", "poddisruptionbudgets"),
        "StorageClass" => ("storage.k8s.io", "storageclasses"),
        "CSINode" => ("storage.k8s.io", "csinodes"),
        "ReplicaSet" => ("apps", "replicasets"),
        "StatefulSet" => ("apps", "statefulsets"),
        "DaemonSet" => ("apps", "daemonsets"),
        "Deployment" => ("apps", "deployments"),
        "Job" => ("batch", "jobs"),
        "Lease" => ("coordination.k8s.io", "leases"),
        "ConsolidationPolicy" => ("stowage.io", "consolidationpolicies"),
        _ => return None,
    })
}

/// The RBAC verbs of a method of kube's `Api` (`None`: not an API call).
fn verbs_of(method: &str) -> Option<(&'static [&'static str], &'static str)> {
    // (verbs, subresource suffix)
    Some(match method {
        "get" | "get_opt" | "get_metadata" | "get_metadata_opt" => (&["get"], ""),
        "list" | "list_metadata" => (&["list"], ""),
        "create" => (&["create"], ""),
        "replace" => (&["update"], ""),
        "patch" | "patch_metadata" => (&["patch"], ""),
        "delete" | "delete_collection" => (&["delete"], ""),
        "patch_status" => (&["patch"], "/status"),
        "replace_status" => (&["update"], "/status"),
        "get_status" => (&["get"], "/status"),
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

/// Rust source as tokens, comments dropped; everything from the first `#[cfg(test)]` on is
/// left out (tests call the API as the admin, not as stowage).
fn tokens(source: &str) -> Vec<Tok> {
    let source = source.split("#[cfg(test)]").next().unwrap_or_default();
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' || (c == 'r' && matches!(chars.get(i + 1), Some('"' | '#'))) {
            // A string, raw or not.
            let raw = c == 'r';
            let mut hashes = 0;
            if raw {
                i += 1;
                while chars[i] == '#' {
                    hashes += 1;
                    i += 1;
                }
            }
            i += 1;
            let mut s = String::new();
            loop {
                let d = chars[i];
                if !raw && d == '\\' {
                    s.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                if d == '"' && chars[i + 1..].iter().take(hashes).all(|h| *h == '#') {
                    i += 1 + hashes;
                    break;
                }
                s.push(d);
                i += 1;
            }
            out.push(Tok::Str(s));
        } else if c == '\'' {
            // A char literal ('x', '\n') or a lifetime ('a): skipped either way.
            if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else if chars.get(i + 1) == Some(&'\\') {
                i += 2;
                while chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            if !c.is_whitespace() {
                out.push(Tok::Punct(c));
            }
            i += 1;
        }
    }
    out
}

fn ident(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

fn punct(t: Option<&Tok>, c: char) -> bool {
    t == Some(&Tok::Punct(c))
}

/// The type inside `Api<…>` starting at `toks[at]` (just after `<`): the last path segment
/// of the outer type, with `PartialObjectMeta<T>` read as `T`. Returns the type and the
/// index after the closing `>`.
fn api_type(toks: &[Tok], mut at: usize) -> (String, usize) {
    let mut depth = 1;
    let mut names = Vec::new();
    while depth > 0 && at < toks.len() {
        match &toks[at] {
            Tok::Punct('<') => depth += 1,
            Tok::Punct('>') => depth -= 1,
            Tok::Ident(s) => names.push((depth, s.clone())),
            _ => {}
        }
        at += 1;
    }
    let outer: Vec<&String> = names
        .iter()
        .filter(|(d, _)| *d == 1)
        .map(|(_, s)| s)
        .collect();
    let mut ty = outer.last().map(|s| s.to_string()).unwrap_or_default();
    // Wrappers whose API is their argument's: metadata only, or the object as text.
    if ty == "PartialObjectMeta" || ty == "Raw" {
        ty = names
            .iter()
            .filter(|(d, _)| *d == 2)
            .map(|(_, s)| s.clone())
            .next_back()
            .unwrap_or_default();
    }
    (ty, at)
}

/// One function of a file: its name and its tokens (up to the next `fn`).
struct Function {
    name: String,
    toks: Vec<Tok>,
}

/// A file's tokens split at every `fn`.
fn functions(toks: &[Tok]) -> Vec<Function> {
    let mut starts: Vec<usize> = (0..toks.len())
        .filter(|&i| ident(toks.get(i)) == Some("fn") && ident(toks.get(i + 1)).is_some())
        .collect();
    starts.push(toks.len());
    starts
        .windows(2)
        .map(|w| Function {
            name: ident(toks.get(w[0] + 1)).unwrap().to_string(),
            toks: toks[w[0]..w[1]].to_vec(),
        })
        .collect()
}

/// `name → type` of every `name: Api<T>` and `let name = Api::<T>::…` in `toks`.
fn bindings(toks: &[Tok]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for i in 0..toks.len() {
        if let Some(name) = ident(toks.get(i))
            && punct(toks.get(i + 1), ':')
            && !punct(toks.get(i + 2), ':')
            && ident(toks.get(i + 2)) == Some("Api")
            && punct(toks.get(i + 3), '<')
        {
            out.insert(name.to_string(), api_type(toks, i + 4).0);
        }
        if ident(toks.get(i)) == Some("let")
            && let Some(name) = ident(toks.get(i + 1))
            && punct(toks.get(i + 2), '=')
            && ident(toks.get(i + 3)) == Some("Api")
            && punct(toks.get(i + 4), ':')
            && punct(toks.get(i + 6), '<')
        {
            out.insert(name.to_string(), api_type(toks, i + 7).0);
        }
    }
    out
}

/// `name → type` of the `Api<T>` fields of the file's structs.
fn struct_fields(toks: &[Tok], file: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for i in 0..toks.len() {
        if ident(toks.get(i)) != Some("struct") || !punct(toks.get(i + 2), '{') {
            continue;
        }
        let end = (i..toks.len())
            .find(|&j| punct(toks.get(j), '}'))
            .unwrap_or(toks.len());
        for (name, ty) in bindings(&toks[i..end]) {
            let before = out.insert(name.clone(), ty.clone());
            assert!(
                before.is_none_or(|b| b == ty),
                "{file}: two structs have an Api field `{name}`; teach tests/rbac.rs which is which"
            );
        }
    }
    out
}

/// `(group, resource)` of the one dynamic kind a file names (`GroupVersionKind::gvk(…)`,
/// with `from_gvk_with_plural`'s plural when given).
fn dynamic_kind(toks: &[Tok], file: &str) -> Option<(String, String)> {
    let strings_after = |i: usize, n: usize| -> Vec<String> {
        toks[i..]
            .iter()
            .filter_map(|t| match t {
                Tok::Str(s) => Some(s.clone()),
                _ => None,
            })
            .take(n)
            .collect()
    };
    let gvks: Vec<Vec<String>> = (0..toks.len())
        .filter(|&i| {
            ident(toks.get(i)) == Some("GroupVersionKind") && ident(toks.get(i + 3)) == Some("gvk")
        })
        .map(|i| strings_after(i, 3))
        .collect();
    assert!(
        gvks.len() <= 1,
        "{file}: more than one dynamic kind; teach tests/rbac.rs which call reads which"
    );
    let gvk = gvks.first()?;
    let plural = (0..toks.len())
        .find(|&i| ident(toks.get(i)) == Some("from_gvk_with_plural"))
        .map(|i| strings_after(i, 4)[3].clone())
        .unwrap_or_else(|| format!("{}s", gvk[2].to_lowercase()));
    Some((gvk[0].clone(), plural))
}

/// The types an `each_kind!`-style macro lists (`$m!(Type, "Kind");`).
fn each_kind(toks: &[Tok]) -> Vec<String> {
    (0..toks.len())
        .filter(|&i| ident(toks.get(i)) == Some("$m") && punct(toks.get(i + 1), '!'))
        .filter_map(|i| ident(toks.get(i + 3)).map(str::to_string))
        .collect()
}

/// `group/resource` → verbs.
type Grants = BTreeMap<String, BTreeSet<String>>;

fn grant(out: &mut Grants, group: &str, resource: &str, verbs: &[&str]) {
    let key = format!("{group}/{resource}");
    out.entry(key)
        .or_default()
        .extend(verbs.iter().map(|v| v.to_string()));
}

/// The calls of one file, per function name (module-qualified by the file stem).
fn calls_in_file(path: &Path, out: &mut BTreeMap<String, Grants>) {
    let file = path.display().to_string();
    let toks = tokens(&std::fs::read_to_string(path).unwrap());
    let functions = functions(&toks);
    let fields = struct_fields(&toks, &file);
    let dynamic = dynamic_kind(&toks, &file);
    let kinds = each_kind(&toks);
    let resolve = |ty: &str| -> Result<Vec<(String, String)>, String> {
        if ty == "DynamicObject" {
            return dynamic
                .clone()
                .map(|d| vec![d])
                .ok_or_else(|| format!("{file}: Api<DynamicObject> without a GroupVersionKind"));
        }
        if ty == "$ty" {
            return kinds.iter().map(|k| resolve_typed(k, &file)).collect();
        }
        resolve_typed(ty, &file).map(|r| vec![r])
    };
    // Generic functions first: the verbs they use on their `Api<K>` parameter.
    let mut generic: BTreeMap<String, (String, Vec<&'static str>)> = BTreeMap::new();
    for f in &functions {
        for (name, ty) in bindings(&f.toks) {
            if ty.len() == 1 {
                let verbs = method_verbs(&f.toks, &name)
                    .into_iter()
                    .map(|(v, _)| v)
                    .collect();
                generic.insert(f.name.clone(), (name, verbs));
            }
        }
    }
    let stem = path.file_stem().unwrap().to_string_lossy().to_string();
    for f in &functions {
        let grants = out.entry(format!("{stem}::{}", f.name)).or_default();
        let mut local = bindings(&f.toks);
        // Fields, read as `self.field.method(…)`.
        for (name, ty) in &fields {
            let via_self = (1..f.toks.len()).any(|i| {
                ident(f.toks.get(i - 1)) == Some("self")
                    && punct(f.toks.get(i), '.')
                    && ident(f.toks.get(i + 1)) == Some(name.as_str())
            });
            if via_self {
                local.insert(name.clone(), ty.clone());
            }
        }
        for (name, ty) in &local {
            if ty.len() == 1 {
                continue; // a generic parameter: its callers' types below
            }
            for (verb, sub) in method_verbs(&f.toks, name) {
                for (g, r) in resolve(ty).unwrap_or_else(|e| panic!("{e}")) {
                    grant(grants, &g, &format!("{r}{sub}"), &[verb]);
                }
            }
        }
        // Calls of a generic function: `list_kind(Api::<T>::all(…), …)` or `list_kind(api, …)`.
        for (callee, (_, verbs)) in &generic {
            for i in 0..f.toks.len() {
                if ident(f.toks.get(i)) != Some(callee.as_str()) || !punct(f.toks.get(i + 1), '(') {
                    continue;
                }
                let ty = if ident(f.toks.get(i + 2)) == Some("Api") {
                    // Api :: < T > ::
                    api_type(&f.toks, i + 6).0
                } else {
                    let arg = ident(f.toks.get(i + 2)).unwrap_or_default();
                    local
                        .get(arg)
                        .cloned()
                        .unwrap_or_else(|| "DynamicObject".into())
                };
                for (g, r) in resolve(&ty).unwrap_or_else(|e| panic!("{e}")) {
                    grant(grants, &g, &r, verbs);
                }
            }
        }
        // Writes that do not go through `Api`: the Eviction subresource by URL, and kube's
        // event recorder (events.k8s.io/v1 Events, created and then patched as a series).
        for t in &f.toks {
            if let Tok::Str(s) = t
                && s.ends_with("/eviction")
            {
                grant(grants, "", "pods/eviction", &["create"]);
            }
        }
        for i in 0..f.toks.len() {
            if ident(f.toks.get(i)) == Some("Recorder") && ident(f.toks.get(i + 3)) == Some("new") {
                grant(grants, "events.k8s.io", "events", &["create", "patch"]);
            }
        }
        if grants.is_empty() {
            out.remove(&format!("{stem}::{}", f.name));
        }
    }
}

fn resolve_typed(ty: &str, file: &str) -> Result<(String, String), String> {
    resource_of(ty)
        .map(|(g, r)| (g.to_string(), r.to_string()))
        .ok_or_else(|| format!("{file}: Api<{ty}>: add its group and resource to tests/rbac.rs"))
}

/// The verbs called on `var` in `toks`: `var.method(…)` and `watcher(var, …)` (list and
/// watch).
fn method_verbs(toks: &[Tok], var: &str) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for i in 0..toks.len() {
        if ident(toks.get(i)) == Some(var)
            && punct(toks.get(i + 1), '.')
            && let Some(method) = ident(toks.get(i + 2))
            && punct(toks.get(i + 3), '(')
            && let Some((verbs, sub)) = verbs_of(method)
        {
            out.extend(verbs.iter().map(|v| (*v, sub)));
            // Server-side apply creates the object when it is missing, and the API server
            // asks for `create` then (an object's subresource is never created).
            if method == "patch" && applies(&toks[i + 3..]) {
                out.push(("create", sub));
            }
        }
        if ident(toks.get(i)) == Some("watcher")
            && punct(toks.get(i + 1), '(')
            && ident(toks.get(i + 2)) == Some(var)
        {
            out.extend([("list", ""), ("watch", "")]);
        }
    }
    out
}

/// Whether the call whose `(` starts `toks` sends a `Patch::Apply`.
fn applies(toks: &[Tok]) -> bool {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return false;
                }
            }
            Tok::Ident(s)
                if s == "Apply" && ident(toks.get(i.wrapping_sub(3))) == Some("Patch") =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

fn calls_in(dir: &Path, out: &mut BTreeMap<String, Grants>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            calls_in(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            calls_in_file(&path, out);
        }
    }
}

/// The rules of a chart RBAC file (flow-style lists, as the chart writes them).
fn role(file: &str) -> Grants {
    let text = std::fs::read_to_string(format!("charts/stowage/files/{file}")).unwrap();
    let list = |line: &str, key: &str| -> Option<Vec<String>> {
        let rest = line
            .trim()
            .trim_start_matches("- ")
            .strip_prefix(&format!("{key}:"))?;
        let inner = rest.trim().strip_prefix('[')?.strip_suffix(']')?;
        Some(
            inner
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_string())
                .collect(),
        )
    };
    let mut out = Grants::new();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(groups) = list(line, "apiGroups") else {
            continue;
        };
        let resources = list(lines[i + 1], "resources").expect("resources after apiGroups");
        let verbs = list(lines[i + 2], "verbs").expect("verbs after resources");
        for g in &groups {
            for r in &resources {
                let key = format!("{g}/{r}");
                let new: BTreeSet<String> = verbs.iter().cloned().collect();
                let known = out.entry(key.clone()).or_default();
                assert!(known.is_disjoint(&new), "{file}: {key} granted twice");
                known.extend(new);
            }
        }
    }
    assert!(!out.is_empty(), "{file}: no rules read");
    out
}

fn merge<'a>(parts: impl IntoIterator<Item = &'a Grants>) -> Grants {
    let mut out = Grants::new();
    for p in parts {
        for (k, v) in p {
            out.entry(k.clone()).or_default().extend(v.iter().cloned());
        }
    }
    out
}

/// What `a` has that `b` lacks, as `group/resource verb` lines.
fn missing(a: &Grants, b: &Grants) -> Vec<String> {
    let mut out = Vec::new();
    for (k, verbs) in a {
        for v in verbs {
            if !b.get(k).is_some_and(|bv| bv.contains(v)) {
                out.push(format!("{k} {v}"));
            }
        }
    }
    out
}

/// Every call is granted and every grant is called.
fn both_ways(used: &Grants, granted: &Grants) {
    let unallowed = missing(used, granted);
    assert!(
        unallowed.is_empty(),
        "called but not granted: {unallowed:?}"
    );
    let unused = missing(granted, used);
    assert!(unused.is_empty(), "granted but never called: {unused:?}");
}

fn all_calls() -> BTreeMap<String, Grants> {
    let mut calls = BTreeMap::new();
    calls_in(Path::new("src"), &mut calls);
    calls
}

#[test]
fn the_scan_finds_the_calls_it_must() {
    let calls = all_calls();
    let everything = merge(calls.values());
    // A few calls known to exist, so a broken scan cannot pass the comparison below by
    // finding nothing.
    for (key, verb) in [
        ("/nodes", "patch"),
        ("/pods", "watch"),
        ("/pods/eviction", "create"),
        ("coordination.k8s.io/leases", "update"),
        ("stowage.io/consolidationpolicies/status", "patch"),
        ("karpenter.sh/nodeclaims", "delete"),
        ("sparkoperator.k8s.io/sparkapplications", "watch"),
        ("storage.k8s.io/csinodes", "list"),
        ("events.k8s.io/events", "create"),
    ] {
        assert!(
            everything.get(key).is_some_and(|v| v.contains(verb)),
            "the scan missed {key} {verb}: {everything:#?}"
        );
    }
}

#[test]
fn the_controllers_roles_grant_exactly_what_its_code_calls() {
    let calls = all_calls();
    // The controller runs everything but the uninstall hook (`stowage cleanup`).
    let used = merge(
        calls
            .iter()
            .filter(|(f, _)| !f.starts_with("cleanup::"))
            .map(|(_, g)| g),
    );
    let granted = merge([&role("clusterrole.yaml"), &role("role.yaml")]);
    both_ways(&used, &granted);
}

#[test]
fn the_uninstall_hooks_roles_grant_exactly_what_cleanup_calls() {
    let calls = all_calls();
    // `cleanup` and the `act` functions it calls.
    let text = std::fs::read_to_string("src/k8s/cleanup.rs").unwrap();
    let toks = tokens(&text);
    let mut used: Vec<Grants> = (calls.iter())
        .filter(|(f, _)| f.starts_with("cleanup::"))
        .map(|(_, g)| g.clone())
        .collect();
    let called: Vec<&str> = (0..toks.len())
        .filter(|&i| ident(toks.get(i)) == Some("act"))
        .filter_map(|i| ident(toks.get(i + 3)))
        .collect();
    used.push(act_calls(&calls, &called));
    let used = merge(&used);
    let granted = merge([
        &role("cleanup-clusterrole.yaml"),
        &role("cleanup-role.yaml"),
    ]);
    both_ways(&used, &granted);
}

/// The calls of the `act` functions `entry` and of every `act` function they call, directly or
/// through each other (`act::release` goes through the node update the marks share). Names
/// that are no function of `act` (its types) add nothing.
fn act_calls(calls: &BTreeMap<String, Grants>, entry: &[&str]) -> Grants {
    let toks = tokens(&std::fs::read_to_string("src/k8s/act.rs").unwrap());
    let functions = functions(&toks);
    let names: BTreeSet<&str> = functions.iter().map(|f| f.name.as_str()).collect();
    let mut found: BTreeSet<&str> = entry
        .iter()
        .copied()
        .filter(|f| names.contains(f))
        .collect();
    let mut todo: Vec<&str> = found.iter().copied().collect();
    while let Some(name) = todo.pop() {
        let f = functions.iter().find(|f| f.name == name).unwrap();
        for callee in (1..f.toks.len()).filter_map(|i| ident(f.toks.get(i))) {
            if let Some(&known) = names.get(callee)
                && found.insert(known)
            {
                todo.push(known);
            }
        }
    }
    merge(found.iter().filter_map(|f| calls.get(&format!("act::{f}"))))
}

#[test]
fn the_interruption_agents_role_grants_what_it_calls_and_nothing_the_controller_does_not() {
    let calls = all_calls();
    let agent = role("agent-clusterrole.yaml");
    // The agent's own reads (`agent.rs`), and the writes of the interruption path it shares
    // with the controller: mark the node interrupted, evict, explain.
    let used = merge(
        (calls.iter())
            .filter(|(f, _)| f.starts_with("agent::") || *f == "events::new")
            .map(|(_, g)| g)
            .chain([&act_calls(&calls, &["mark_interrupted", "evict"])]),
    );
    both_ways(&used, &agent);
}
