//! Named sequences that refer to each other in a loop.

use super::*;

/// Named sequences referring to each other in a loop would recurse forever
/// at request time.
pub(super) fn check_sequence_cycles(
    sequences: &BTreeMap<String, Sequence>,
    elements: &BTreeMap<String, &Element>,
) -> Result<(), ArtifactError> {
    let graph: BTreeMap<&str, Vec<&str>> = sequences
        .iter()
        .map(|(name, sequence)| {
            let mut refs = Vec::new();
            collect_sequence_refs(&sequence.mediators, &mut refs);
            (name.as_str(), refs)
        })
        .collect();
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = find_cycle(&graph, start, &mut path, &mut done) {
            let first = cycle.first().copied().unwrap_or(start);
            let message = format!(
                "sequences refer to each other in a cycle: {}",
                cycle.join(" -> ")
            );
            return Err(match elements.get(first) {
                Some(element) => invalid(element, message),
                None => ArtifactError::Invalid {
                    element: "sequence".to_string(),
                    line: 1,
                    column: 1,
                    message,
                },
            });
        }
    }
    Ok(())
}

pub(super) fn find_cycle<'g>(
    graph: &BTreeMap<&'g str, Vec<&'g str>>,
    node: &'g str,
    path: &mut Vec<&'g str>,
    done: &mut BTreeSet<&'g str>,
) -> Option<Vec<&'g str>> {
    if let Some(position) = path.iter().position(|seen| *seen == node) {
        let mut cycle = path[position..].to_vec();
        cycle.push(node);
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node);
    for next in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = find_cycle(graph, next, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node);
    None
}

pub(super) fn collect_sequence_refs<'m>(mediators: &'m [Mediator], refs: &mut Vec<&'m str>) {
    for mediator in mediators {
        match mediator {
            Mediator::SequenceRef(key) => refs.push(key),
            Mediator::Filter(filter) => {
                collect_sequence_refs(&filter.then, refs);
                collect_sequence_refs(&filter.otherwise, refs);
            }
            _ => {}
        }
    }
}
