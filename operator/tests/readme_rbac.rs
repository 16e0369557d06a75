//! `operator/README.md`'s RBAC table lists exactly what `transit-operator rbac` prints (the
//! operator's and the leader election's rules): issue 10 found it listing fewer permissions
//! than the chart grants.

use std::collections::BTreeSet;

use transit_operator::rbac::{LEADER_ELECTION, OPERATOR, WEBHOOK, WEBHOOK_CERTS};

type Triple = (String, String, String);

/// Every `(group, resource, verb)` of the README's table under "RBAC the operator needs".
fn readme_triples() -> BTreeSet<Triple> {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## RBAC the operator needs")
        .nth(1)
        .expect("the README's RBAC section");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(|s| if s == "\"\"" { String::new() } else { s.into() })
            .collect()
    };
    let mut triples = BTreeSet::new();
    for row in section
        .lines()
        .skip_while(|l| !l.starts_with("| apiGroups"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (groups, resources) = (ticked(cells[1]), ticked(cells[2]));
        // Verbs, before any "(why)" note.
        let verbs: Vec<String> = cells[3]
            .split('(')
            .next()
            .unwrap_or_default()
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        for g in &groups {
            for r in &resources {
                for v in &verbs {
                    triples.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    triples
}

#[test]
fn the_readme_rbac_table_is_what_the_operator_uses() {
    let used: BTreeSet<Triple> = OPERATOR
        .iter()
        .chain(LEADER_ELECTION)
        .chain(WEBHOOK)
        .chain(WEBHOOK_CERTS)
        .flat_map(|r| r.triples())
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect();
    let listed = readme_triples();
    let missing: Vec<_> = used.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&used).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "operator/README.md's RBAC table differs from `transit-operator rbac`:\n missing {missing:?}\n extra {extra:?}"
    );
}
