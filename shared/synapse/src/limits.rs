//! The caps on what one artifact may hold. The publisher refuses anything
//! over them at publish time (HTTP 422 naming the cap) and the gateway
//! applies the same values when it validates what it deploys, because both
//! call [`crate::parse_artifact`], which reads [`LIMITS`]. They keep the
//! work a hostile document can cause bounded: parsing and validation are
//! linear in the document, and nothing recurses once per input item.

/// The caps of one artifact. Each is checked while the document is read or
/// validated, before any work that grows faster than the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Elements in the whole document, counted while reading. Real
    /// artifacts hold a few hundred; a bundle of 1,000 resources stays well
    /// under it.
    pub max_elements: usize,
    /// Attributes on one element, counted before quick-xml's duplicate
    /// check (which compares every pair) runs.
    pub max_attributes_per_element: usize,
    /// How deeply XML elements nest. Real artifacts nest a dozen levels;
    /// validation walks the tree recursively, so this also bounds its stack.
    pub max_xml_depth: usize,
    /// Named `<sequence>` elements in a `<definitions>` bundle.
    pub max_sequences: usize,
    /// Named `<endpoint>` elements in a `<definitions>` bundle.
    pub max_endpoints: usize,
    /// Named `<localEntry>` elements in a `<definitions>` bundle.
    pub max_local_entries: usize,
    /// How deeply mediators may nest at request time: the top-level list of
    /// a sequence is level 1, and each `<filter>` branch or `<sequence
    /// key>` adds one. The gateway's mediation engine stops at this depth,
    /// so the publisher refuses deeper artifacts rather than deploying one
    /// that answers every request with an error.
    pub max_mediation_depth: usize,
}

/// The caps every publisher and gateway applies.
pub const LIMITS: Limits = Limits {
    max_elements: 20_000,
    max_attributes_per_element: 256,
    max_xml_depth: 200,
    max_sequences: 1_000,
    max_endpoints: 1_000,
    max_local_entries: 1_000,
    max_mediation_depth: 16,
};
