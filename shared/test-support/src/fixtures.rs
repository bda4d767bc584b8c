//! Artifacts tests publish.

/// `xml` padded past the size deploy events carry inline (64 KiB by
/// default), so gateways fetch it from the traffic manager: for tests of
/// the fetch path (its faults, its traces).
pub fn too_large_to_inline(xml: &str) -> String {
    format!("<!-- {} -->\n{xml}", "padding ".repeat(9_000))
}

/// A mock API: `GET <context>/hello` answers `{"api": <name>, "revision": <tag>}`.
pub fn mock_api(name: &str, context: &str, tag: &str) -> String {
    format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="{name}" context="{context}" version="1.0">
  <resource methods="GET" uri-template="/hello">
    <inSequence>
      <payloadFactory media-type="json">
        <format>{{"api": "{name}", "tag": "{tag}"}}</format>
        <args/>
      </payloadFactory>
      <respond/>
    </inSequence>
  </resource>
</api>"#
    )
}
