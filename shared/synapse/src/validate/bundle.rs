//! The named elements of a `<definitions>` bundle: local entries,
//! endpoints and sequences.

use super::*;

impl<'d> Validator<'d> {
    // ---- named bundle elements ------------------------------------------

    pub(super) fn local_entries(&self) -> Result<BTreeMap<String, String>, ArtifactError> {
        self.bundle
            .local_entries
            .iter()
            .map(|(key, element)| Ok((key.clone(), self.local_entry(element)?)))
            .collect()
    }

    /// Text content, or the inner XML as written when there are elements.
    pub(super) fn local_entry(&self, element: &Element) -> Result<String, ArtifactError> {
        if element.attr("src").is_some() {
            return Err(unsupported(
                element,
                "remote local entries (src=) are not supported",
                "text or inline XML content",
            ));
        }
        Ok(self.content(element))
    }

    pub(super) fn content(&self, element: &Element) -> String {
        if element.children.is_empty() {
            element.text.trim().to_string()
        } else {
            self.document.inner_source(element).trim().to_string()
        }
    }

    pub(super) fn named_endpoints(&mut self) -> Result<BTreeMap<String, Endpoint>, ArtifactError> {
        let elements: Vec<(String, &Element)> = self
            .bundle
            .endpoints
            .iter()
            .map(|(name, element)| (name.clone(), *element))
            .collect();
        let mut endpoints = BTreeMap::new();
        for (name, element) in elements {
            if element.attr("key").is_some() {
                return Err(unsupported(
                    element,
                    "a named endpoint must be defined inline, not refer to another by key",
                    ENDPOINT_KINDS,
                ));
            }
            endpoints.insert(name, self.endpoint(element)?);
        }
        Ok(endpoints)
    }

    pub(super) fn named_sequences(&mut self) -> Result<BTreeMap<String, Sequence>, ArtifactError> {
        let elements: Vec<(String, &Element)> = self
            .bundle
            .sequences
            .iter()
            .map(|(name, element)| (name.clone(), *element))
            .collect();
        let mut sequences = BTreeMap::new();
        for (name, element) in elements {
            let mediators = self.mediators(element)?;
            sequences.insert(
                name.clone(),
                Sequence {
                    name: Some(name),
                    mediators,
                },
            );
        }
        Ok(sequences)
    }

    // ---- api and resources ------------------------------------------------
}
