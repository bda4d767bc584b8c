//! Named sequences that refer to each other in a loop, and mediators that
//! nest deeper than the gateway runs them.

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
        if let Some(cycle) = find_cycle(&graph, start, &mut done) {
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

/// The first cycle reachable from `start`, as the path that closes it
/// (`a -> b -> a`), or `None`. Nodes in `done` are known to reach no
/// cycle and are skipped; every node this call finishes is added to it.
///
/// Depth-first with an explicit stack and an index of the path, so a
/// chain of any length costs linear time and no call stack.
pub(super) fn find_cycle<'g>(
    graph: &BTreeMap<&'g str, Vec<&'g str>>,
    start: &'g str,
    done: &mut BTreeSet<&'g str>,
) -> Option<Vec<&'g str>> {
    if done.contains(start) {
        return None;
    }
    // The path from `start`: each node with the index of its next edge.
    let mut path: Vec<(&'g str, usize)> = vec![(start, 0)];
    let mut on_path: BTreeMap<&'g str, usize> = BTreeMap::from([(start, 0)]);
    while let Some((node, edge)) = path.last_mut() {
        let node = *node;
        let next = graph.get(node).and_then(|edges| edges.get(*edge)).copied();
        *edge += 1;
        let Some(next) = next else {
            path.pop();
            on_path.remove(node);
            done.insert(node);
            continue;
        };
        if let Some(&position) = on_path.get(next) {
            let mut cycle: Vec<&'g str> = path[position..].iter().map(|(n, _)| *n).collect();
            cycle.push(next);
            return Some(cycle);
        }
        if done.contains(next) {
            continue;
        }
        on_path.insert(next, path.len());
        path.push((next, 0));
    }
    None
}

/// Refuses mediators that nest deeper than the gateway runs them
/// (`LIMITS.max_mediation_depth`): every sequence a request can start in
/// (a resource's in, out and fault sequences, and every named sequence, as
/// any of them can be a fault sequence) is walked through its filters and
/// sequence references. Runs after the cycle check, so the references form
/// a DAG; each named sequence's depth is computed once, and the walk gives
/// up as soon as it is too deep, so it never recurses more than the cap.
pub(super) fn check_mediation_depth(
    api_element: &Element,
    api: &Api,
    sequences: &BTreeMap<String, Sequence>,
    elements: &BTreeMap<String, &Element>,
) -> Result<(), ArtifactError> {
    let mut walk = DepthWalk {
        sequences,
        memo: BTreeMap::new(),
        max: LIMITS.max_mediation_depth,
    };
    let too_deep = |element: &Element, entry: String| ArtifactError::OverLimit {
        element: element.name.clone(),
        line: element.line,
        column: element.column,
        cap: "max_mediation_depth",
        max: LIMITS.max_mediation_depth,
        what: format!(
            "the nesting of filters and sequence references starting in {entry} \
             (the gateway runs at most this many levels)"
        ),
    };
    for (index, resource) in api.resources.iter().enumerate() {
        let inline_fault = match &resource.fault_sequence {
            Some(FaultSequence::Inline(sequence)) => Some(sequence),
            _ => None,
        };
        let flows = [
            ("inSequence", resource.in_sequence.as_ref()),
            ("outSequence", resource.out_sequence.as_ref()),
            ("faultSequence", inline_fault),
        ];
        for (flow, sequence) in flows {
            if let Some(sequence) = sequence
                && walk.levels(&sequence.mediators, 1).is_none()
            {
                let entry = format!("the {flow} of resource {}", index + 1);
                return Err(too_deep(api_element, entry));
            }
        }
    }
    for (name, sequence) in sequences {
        if walk.levels(&sequence.mediators, 1).is_none() {
            let element = elements.get(name).copied().unwrap_or(api_element);
            return Err(too_deep(element, format!("sequence `{name}`")));
        }
    }
    Ok(())
}

struct DepthWalk<'a> {
    sequences: &'a BTreeMap<String, Sequence>,
    /// The levels of each named sequence walked so far.
    memo: BTreeMap<&'a str, usize>,
    max: usize,
}

impl<'a> DepthWalk<'a> {
    /// How many levels `mediators` span (at least 1), when they start at
    /// level `depth`; `None` when some path goes deeper than `max`.
    fn levels(&mut self, mediators: &'a [Mediator], depth: usize) -> Option<usize> {
        if depth > self.max {
            return None;
        }
        let mut deepest = 0;
        for mediator in mediators {
            let nested = match mediator {
                Mediator::Filter(filter) => self
                    .levels(&filter.then, depth + 1)?
                    .max(self.levels(&filter.otherwise, depth + 1)?),
                Mediator::SequenceRef(key) => match self.memo.get(key.as_str()) {
                    Some(&levels) if depth + levels > self.max => return None,
                    Some(&levels) => levels,
                    None => match self.sequences.get(key) {
                        Some(sequence) => {
                            let levels = self.levels(&sequence.mediators, depth + 1)?;
                            self.memo.insert(key.as_str(), levels);
                            levels
                        }
                        // Reported as a missing reference before this runs.
                        None => 0,
                    },
                },
                _ => 0,
            };
            deepest = deepest.max(nested);
        }
        Some(1 + deepest)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(names: &[String]) -> BTreeMap<&str, Vec<&str>> {
        names
            .iter()
            .zip(names.iter().skip(1))
            .map(|(from, to)| (from.as_str(), vec![to.as_str()]))
            .collect()
    }

    #[test]
    fn a_chain_of_200000_links_needs_no_stack() {
        let names: Vec<String> = (0..=200_000).map(|i| format!("s{i}")).collect();
        let graph = chain(&names);
        let mut done = BTreeSet::new();
        assert_eq!(find_cycle(&graph, "s0", &mut done), None);
        assert_eq!(done.len(), names.len());

        let mut looped = chain(&names);
        looped.insert(names[200_000].as_str(), vec!["s0"]);
        let cycle = find_cycle(&looped, "s0", &mut BTreeSet::new()).expect("a cycle");
        assert_eq!(cycle.len(), 200_002);
        assert_eq!((cycle[0], cycle[200_001]), ("s0", "s0"));
    }

    #[test]
    fn cycles_are_found_past_finished_branches() {
        let graph: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
            ("a", vec!["b", "c"]),
            ("b", vec!["d"]),
            ("c", vec!["d", "e"]),
            ("d", vec![]),
            ("e", vec!["c"]),
        ]);
        let mut done = BTreeSet::new();
        assert_eq!(
            find_cycle(&graph, "a", &mut done),
            Some(vec!["c", "e", "c"])
        );
        assert_eq!(find_cycle(&graph, "d", &mut BTreeSet::new()), None);
    }
}
