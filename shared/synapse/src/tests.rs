use std::time::Duration;

use super::expression::{parse_condition, parse_expression};
use super::*;

const PIZZASHACK: &str = include_str!("../../../config/compat/wso2-apim-PizzaShackAPI_v1.0.0.xml");
const SAMPLE_800: &str = include_str!("../../../config/compat/apache-synapse-sample-800.xml");

const PRODUCTION: &str = "PizzaShackAPI--v1.0.0_APIproductionEndpoint";
const SANDBOX: &str = "PizzaShackAPI--v1.0.0_APIsandboxEndpoint";

fn parse(xml: &str) -> Result<Artifact, ArtifactError> {
    parse_artifact(xml.as_bytes())
}

/// A bare api with one catch-all resource whose inSequence holds `mediators`.
fn with_in_sequence(mediators: &str) -> String {
    format!(
        r#"<api name="A" context="/a"><resource><inSequence>{mediators}</inSequence></resource></api>"#
    )
}

fn in_mediators(mediators: &str) -> Vec<Mediator> {
    let artifact = parse(&with_in_sequence(mediators)).expect("valid artifact");
    artifact.api.resources[0]
        .in_sequence
        .clone()
        .expect("in sequence")
        .mediators
}

fn single_mediator(mediator: &str) -> Mediator {
    let mut mediators = in_mediators(mediator);
    assert_eq!(mediators.len(), 1);
    mediators.remove(0)
}

fn pizzashack_bundle() -> String {
    let api = PIZZASHACK
        .split_once("?>")
        .map_or(PIZZASHACK, |(_, rest)| rest);
    format!(
        r#"<definitions xmlns="http://ws.apache.org/ns/synapse">
{api}
<endpoint name="{PRODUCTION}"><http uri-template="http://127.0.0.1:8081/prod" method="GET"/></endpoint>
<endpoint name="{SANDBOX}"><http uri-template="http://127.0.0.1:8081/sandbox"/></endpoint>
</definitions>"#
    )
}

fn assert_invalid<T: std::fmt::Debug>(
    result: Result<T, ArtifactError>,
    element: &str,
    needle: &str,
) {
    match result {
        Err(ArtifactError::Invalid {
            element: got,
            message,
            ..
        }) => {
            assert_eq!(got, element, "element of: {message}");
            assert!(message.contains(needle), "`{needle}` not in: {message}");
        }
        other => panic!("expected Invalid <{element}>, got {other:?}"),
    }
}

fn assert_unsupported(result: Result<Artifact, ArtifactError>, element: &str) -> (usize, usize) {
    match result {
        Err(ArtifactError::Unsupported {
            element: got,
            line,
            column,
            supported,
            ..
        }) => {
            assert_eq!(got, element);
            assert!(!supported.is_empty());
            (line, column)
        }
        other => panic!("expected Unsupported <{element}>, got {other:?}"),
    }
}

// ---- the real compatibility files ----------------------------------------------

#[test]
fn pizzashack_bare_names_both_missing_endpoints() {
    let error = parse(PIZZASHACK).expect_err("endpoints are not defined");
    assert_eq!(error.http_status(), 422);
    let ArtifactError::Invalid {
        element,
        line,
        message,
        ..
    } = error
    else {
        panic!("expected Invalid, got {error:?}");
    };
    assert_eq!(element, "endpoint");
    assert_eq!(line, 8);
    assert!(message.contains(PRODUCTION), "{message}");
    assert!(message.contains(SANDBOX), "{message}");
    // Each key is named once, although every resource refers to both.
    assert_eq!(message.matches(PRODUCTION).count(), 1, "{message}");
}

#[test]
fn pizzashack_bundle_parses() {
    let artifact = parse(&pizzashack_bundle()).expect("bundle is valid");
    let api = &artifact.api;
    assert_eq!(api.name, "admin--PizzaShackAPI");
    assert_eq!(api.version.as_deref(), Some("1.0.0"));
    assert_eq!(api.context, "/pizzashack/1.0.0");
    assert_eq!(api.resources.len(), 5);
    assert_eq!(api.handlers.len(), 7);
    assert_eq!(
        api.handlers[0]
            .properties
            .get("apiUUID")
            .map(String::as_str),
        Some("53002210-f0c8-4e86-97db-b6a31092ba2a")
    );
    assert_eq!(
        api.handlers[2]
            .properties
            .get("APILevelPolicy")
            .map(String::as_str),
        Some("")
    );
    assert!(!artifact.warnings.is_empty());
    assert_eq!(artifact.warnings.len(), 2, "{:?}", artifact.warnings);
    assert!(artifact.warnings[0].contains("APIMgtResponseHandler"));
    assert_eq!(artifact.endpoints.len(), 2);

    let order = &api.resources[0];
    assert_eq!(order.methods, vec![HttpMethod::Post]);
    assert!(matches!(
        &order.matcher,
        ResourceMatcher::UrlMapping(UrlMapping::Exact(path)) if path == "/order"
    ));
    assert!(matches!(
        order.fault_sequence,
        Some(FaultSequence::BuiltinDefault)
    ));
    let by_id = &api.resources[2];
    let ResourceMatcher::UriTemplate(template) = &by_id.matcher else {
        panic!("expected a uri-template");
    };
    assert_eq!(
        template.segments,
        vec![
            TemplateSegment::Literal("order".into()),
            TemplateSegment::Variable("orderId".into())
        ]
    );

    let mediators = &order.in_sequence.as_ref().expect("in sequence").mediators;
    let Mediator::Property(timestamp) = &mediators[0] else {
        panic!("expected a property mediator");
    };
    assert!(matches!(
        timestamp.action,
        PropertyAction::Set(ValueSource::Expression(Expression::SystemTime))
    ));
    let Mediator::Filter(filter) = &mediators[1] else {
        panic!("expected a filter");
    };
    let FilterCondition::Regex { source, regex } = &filter.condition else {
        panic!("expected a regex condition");
    };
    assert_eq!(*source, Expression::Property("AM_KEY_TYPE".into()));
    assert!(regex.is_match("PRODUCTION"));
    assert!(!regex.is_match("PRODUCTION2"));
    assert!(matches!(
        &filter.otherwise[..],
        [Mediator::Send(Some(EndpointRef::Key(key)))] if key == SANDBOX
    ));
    let out = &order.out_sequence.as_ref().expect("out sequence").mediators;
    assert!(matches!(
        &out[..],
        [Mediator::Class(_), Mediator::Send(None)]
    ));
}

#[test]
fn synapse_sample_800_parses() {
    let artifact = parse(SAMPLE_800).expect("sample is valid");
    let api = &artifact.api;
    assert_eq!(api.name, "StockQuoteAPI");
    assert_eq!(api.context, "/stockquote");
    assert!(artifact.warnings.is_empty());
    let view = &api.resources[0];
    assert_eq!(view.methods, vec![HttpMethod::Get]);
    let mediators = &view.in_sequence.as_ref().expect("in sequence").mediators;
    let Mediator::PayloadFactory(factory) = &mediators[0] else {
        panic!("expected a payloadFactory");
    };
    assert_eq!(factory.media_type, MediaType::Xml);
    assert!(
        factory.format.starts_with("<m0:getQuote"),
        "{}",
        factory.format
    );
    assert!(factory.format.ends_with("</m0:getQuote>"));
    assert!(factory.format.contains("<m0:symbol>$1</m0:symbol>"));
    assert!(matches!(
        &factory.args[..],
        [ValueSource::Expression(Expression::UriVar(name))] if name == "symbol"
    ));
    let Mediator::Send(Some(EndpointRef::Inline(endpoint))) = &mediators[1] else {
        panic!("expected send to an inline endpoint");
    };
    assert!(matches!(
        &endpoint.kind,
        EndpointKind::Address { uri } if uri == "http://localhost:9000/services/SimpleStockQuoteService"
    ));
    assert_eq!(
        endpoint.attributes.get("format").map(String::as_str),
        Some("soap11")
    );
    let out = &view.out_sequence.as_ref().expect("out sequence").mediators;
    assert!(matches!(&out[..], [Mediator::Send(None)]));

    let order = &api.resources[1];
    assert!(matches!(
        &order.matcher,
        ResourceMatcher::UrlMapping(UrlMapping::Prefix(prefix)) if prefix == "/order"
    ));
    let mediators = &order.in_sequence.as_ref().expect("in sequence").mediators;
    let Mediator::Property(accepted) = &mediators[0] else {
        panic!("expected a property");
    };
    assert_eq!(accepted.name, "FORCE_SC_ACCEPTED");
    assert_eq!(accepted.scope, PropertyScope::Axis2);
    let Mediator::Property(out_only) = &mediators[1] else {
        panic!("expected a property");
    };
    assert_eq!(out_only.scope, PropertyScope::Default);
}

// ---- document shapes and namespaces ------------------------------------------------

#[test]
fn bare_api_without_namespace() {
    let artifact = parse(&with_in_sequence("<respond/>")).expect("valid");
    assert_eq!(artifact.api.name, "A");
    assert_eq!(artifact.api.version, None);
    assert!(matches!(
        artifact.api.resources[0].matcher,
        ResourceMatcher::Any
    ));
    assert!(artifact.api.resources[0].methods.is_empty());
    assert!(artifact.endpoints.is_empty());
}

#[test]
fn definitions_bundle_with_sequences_and_local_entries() {
    let xml = r#"<?xml version="1.0"?>
<!-- a bundle -->
<definitions xmlns="http://ws.apache.org/ns/synapse">
  <localEntry key="greeting">hello &amp; welcome</localEntry>
  <localEntry key="body"><msg><text>$1</text></msg></localEntry>
  <sequence name="common"><log level="full"/></sequence>
  <sequence name="errors"><respond/></sequence>
  <api name="B" context="/b">
    <resource methods="post" uri-template="/x" inSequence="common" faultSequence="errors">
      <outSequence><payloadFactory><format key="body"/><args><arg value="v"/></args></payloadFactory><send/></outSequence>
    </resource>
  </api>
</definitions>"#;
    let artifact = parse(xml).expect("valid bundle");
    assert_eq!(artifact.local_entries["greeting"], "hello & welcome");
    assert_eq!(artifact.local_entries["body"], "<msg><text>$1</text></msg>");
    assert_eq!(artifact.sequences.len(), 2);
    assert_eq!(artifact.sequences["common"].name.as_deref(), Some("common"));
    let resource = &artifact.api.resources[0];
    assert_eq!(resource.methods, vec![HttpMethod::Post]);
    assert!(matches!(
        &resource.in_sequence.as_ref().expect("in").mediators[..],
        [Mediator::SequenceRef(key)] if key == "common"
    ));
    assert!(matches!(
        &resource.fault_sequence,
        Some(FaultSequence::Named(name)) if name == "errors"
    ));
    let Mediator::PayloadFactory(factory) =
        &resource.out_sequence.as_ref().expect("out").mediators[0]
    else {
        panic!("expected a payloadFactory");
    };
    assert_eq!(factory.format, "<msg><text>$1</text></msg>");
}

#[test]
fn prefixed_synapse_namespace_is_accepted() {
    let xml = r#"<syn:api xmlns:syn="http://ws.apache.org/ns/synapse" name="P" context="/p">
  <syn:resource methods="GET"><syn:inSequence><syn:log/><syn:respond/></syn:inSequence></syn:resource>
</syn:api>"#;
    let artifact = parse(xml).expect("valid");
    let mediators = &artifact.api.resources[0]
        .in_sequence
        .as_ref()
        .expect("in")
        .mediators;
    assert!(matches!(
        &mediators[..],
        [Mediator::Log(_), Mediator::Respond]
    ));
}

#[test]
fn other_namespace_is_rejected() {
    let root = r#"<api xmlns="http://example.com/other" name="A" context="/a"><resource/></api>"#;
    let (line, column) = assert_unsupported(parse(root), "api");
    assert_eq!((line, column), (1, 1));

    let mediator = with_in_sequence(r#"<x:log xmlns:x="urn:other"/>"#);
    assert_unsupported(parse(&mediator), "log");

    let undeclared = with_in_sequence("<x:log/>");
    assert_unsupported(parse(&undeclared), "log");
}

#[test]
fn payload_format_content_is_literal_in_any_namespace() {
    let mediator = single_mediator(
        r#"<payloadFactory media-type="xml"><format><p:order xmlns:p="urn:x"><p:id>$1</p:id><q:undeclared/></p:order></format><args><arg expression="$url:id"/></args></payloadFactory>"#,
    );
    let Mediator::PayloadFactory(factory) = mediator else {
        panic!("expected a payloadFactory");
    };
    assert_eq!(
        factory.format,
        r#"<p:order xmlns:p="urn:x"><p:id>$1</p:id><q:undeclared/></p:order>"#
    );
}

#[test]
fn unsupported_root_and_definitions_children() {
    let (line, column) = assert_unsupported(parse("<proxy name='x'/>"), "proxy");
    assert_eq!((line, column), (1, 1));
    let xml = "<definitions>\n  <proxy name='p'/>\n</definitions>";
    let (line, column) = assert_unsupported(parse(xml), "proxy");
    assert_eq!((line, column), (2, 3));
}

#[test]
fn definitions_need_exactly_one_api() {
    assert_invalid(
        parse("<definitions><sequence name='s'><drop/></sequence></definitions>"),
        "definitions",
        "exactly one <api>",
    );
    let api = r#"<api name="A" context="/a"><resource/></api>"#;
    assert_invalid(
        parse(&format!("<definitions>{api}{api}</definitions>")),
        "api",
        "found 2",
    );
}

#[test]
fn unknown_api_child_is_unsupported() {
    let xml = r#"<api name="A" context="/a"><resource/><policy/></api>"#;
    assert_unsupported(parse(xml), "policy");
}

// ---- malformed documents -------------------------------------------------------------

fn assert_malformed(xml: &[u8]) -> (usize, usize, String) {
    let error = parse_artifact(xml).expect_err("malformed");
    assert_eq!(error.http_status(), 400);
    match error {
        ArtifactError::Malformed {
            line,
            column,
            message,
        } => (line, column, message),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn mismatched_end_tag_reports_its_line() {
    let xml = "<api name=\"A\" context=\"/a\">\n  <resource>\n  </resourc>\n</api>";
    let (line, column, message) = assert_malformed(xml.as_bytes());
    assert_eq!((line, column), (3, 3));
    assert!(message.contains("resource"), "{message}");
}

#[test]
fn malformed_documents() {
    assert_eq!(assert_malformed(b"").0, 1);
    assert_eq!(assert_malformed(b"   \n  ").0, 2);
    assert_eq!(assert_malformed(b"garbage").0, 1);
    let (line, _, message) = assert_malformed(b"<api name='A' context='/a'>\n<resource>");
    assert_eq!(line, 2);
    assert!(message.contains("not closed"), "{message}");
    let (line, column, _) = assert_malformed(b"<api>\n  <resource methods=GET/>\n</api>");
    assert_eq!((line, column), (2, 21));
    assert_eq!(assert_malformed(b"<api a='1' a='2'/>").1, 12);
    assert_eq!(assert_malformed(b"<api/><api/>").1, 7);
    assert_eq!(assert_malformed(b"<api>&nbsp;</api>").1, 6);
    let (line, column, message) = assert_malformed(b"<api>\n\xff</api>");
    assert_eq!((line, column), (2, 1));
    assert!(message.contains("UTF-8"));
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(parse::line_column(b"ab\ncd", 4), (2, 2));
    assert_eq!(parse::line_column("é<".as_bytes(), 2), (1, 2));
    assert_eq!(parse::line_column(b"", 10), (1, 1));
}

#[test]
fn bom_and_declaration_are_fine() {
    let xml = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
        with_in_sequence("<drop/>")
    );
    assert!(parse(&xml).is_ok());
}

// ---- mediators ------------------------------------------------------------------

#[test]
fn unsupported_mediator_names_element_and_line() {
    let xml = "<api name=\"A\" context=\"/a\">\n  <resource>\n    <inSequence>\n      <log/>\n      <script language=\"js\">x</script>\n    </inSequence>\n  </resource>\n</api>";
    let error = parse(xml).expect_err("script is unsupported");
    let ArtifactError::Unsupported {
        element,
        line,
        column,
        supported,
        ..
    } = &error
    else {
        panic!("expected Unsupported, got {error:?}");
    };
    assert_eq!(element, "script");
    assert_eq!((*line, *column), (5, 7));
    assert!(supported.contains("payloadFactory"));
    let text = error.to_string();
    assert!(
        text.contains("<script>") && text.contains("line 5"),
        "{text}"
    );
    for other in ["enrich", "xslt", "clone", "iterate", "throttle"] {
        assert_unsupported(parse(&with_in_sequence(&format!("<{other}/>"))), other);
    }
}

#[test]
fn log_mediator_defaults_and_properties() {
    let Mediator::Log(log) = single_mediator("<log/>") else {
        panic!("expected log");
    };
    assert_eq!(log.level, LogLevel::Simple);
    assert_eq!(log.category, "INFO");
    assert_eq!(log.separator, ",");
    let Mediator::Log(log) = single_mediator(
        r#"<log level="custom" category="DEBUG" separator="|"><property name="a" value="1"/><property name="b" expression="$trp:Host"/></log>"#,
    ) else {
        panic!("expected log");
    };
    assert_eq!(log.level, LogLevel::Custom);
    assert_eq!(log.category, "DEBUG");
    assert_eq!(log.separator, "|");
    assert!(
        matches!(&log.properties[0], (name, ValueSource::Literal(v)) if name == "a" && v == "1")
    );
    assert!(matches!(
        &log.properties[1],
        (_, ValueSource::Expression(Expression::Header(h))) if h == "Host"
    ));
    assert_invalid(
        parse(&with_in_sequence(r#"<log level="loud"/>"#)),
        "log",
        "loud",
    );
}

#[test]
fn property_scopes_and_actions() {
    let cases = [
        ("", PropertyScope::Default),
        (r#"scope="default""#, PropertyScope::Default),
        (r#"scope="synapse""#, PropertyScope::Default),
        (r#"scope="axis2""#, PropertyScope::Axis2),
        (r#"scope="axis2-client""#, PropertyScope::Axis2),
        (r#"scope="transport""#, PropertyScope::Transport),
    ];
    for (scope, expected) in cases {
        let Mediator::Property(property) = single_mediator(&format!(
            r#"<property name="HTTP_SC" value="201" type="STRING" {scope}/>"#
        )) else {
            panic!("expected property");
        };
        assert_eq!(property.scope, expected, "{scope}");
    }
    let Mediator::Property(removed) = single_mediator(r#"<property name="X" action="remove"/>"#)
    else {
        panic!("expected property");
    };
    assert!(matches!(removed.action, PropertyAction::Remove));
    assert_unsupported(
        parse(&with_in_sequence(
            r#"<property name="X" value="1" scope="registry"/>"#,
        )),
        "property",
    );
    assert_invalid(
        parse(&with_in_sequence(r#"<property name="X"/>"#)),
        "property",
        "value",
    );
    assert_invalid(
        parse(&with_in_sequence(r#"<property value="1"/>"#)),
        "property",
        "name",
    );
    assert_invalid(
        parse(&with_in_sequence(
            r#"<property name="X" value="1" expression="$ctx:Y"/>"#,
        )),
        "property",
        "both",
    );
}

#[test]
fn header_mediator() {
    let Mediator::Header(header) =
        single_mediator(r#"<header name="X-A" scope="transport" expression="$ctx:a"/>"#)
    else {
        panic!("expected header");
    };
    assert_eq!(header.name, "X-A");
    assert!(matches!(
        header.action,
        PropertyAction::Set(ValueSource::Expression(Expression::Property(_)))
    ));
    let Mediator::Header(removed) = single_mediator(r#"<header name="X-A" action="remove"/>"#)
    else {
        panic!("expected header");
    };
    assert!(matches!(removed.action, PropertyAction::Remove));
    assert_unsupported(
        parse(&with_in_sequence(
            r#"<header name="X" value="1" scope="axis2"/>"#,
        )),
        "header",
    );
}

#[test]
fn payload_factory_json_and_text() {
    let Mediator::PayloadFactory(factory) = single_mediator(
        r#"<payloadFactory media-type="json"><format><![CDATA[{"id": "$1", "n": $2}]]></format><args><arg evaluator="json" expression="json-eval($.a.b[0])"/><arg value="3"/></args></payloadFactory>"#,
    ) else {
        panic!("expected payloadFactory");
    };
    assert_eq!(factory.media_type, MediaType::Json);
    assert_eq!(factory.format, r#"{"id": "$1", "n": $2}"#);
    assert_eq!(factory.args.len(), 2);
    let Mediator::PayloadFactory(text) = single_mediator(
        r#"<payloadFactory media-type="text"><format>  a &lt; b  </format></payloadFactory>"#,
    ) else {
        panic!("expected payloadFactory");
    };
    assert_eq!(text.format, "a < b");
    assert_invalid(
        parse(&with_in_sequence("<payloadFactory/>")),
        "payloadFactory",
        "format",
    );
    assert_unsupported(
        parse(&with_in_sequence(
            r#"<payloadFactory media-type="csv"><format/></payloadFactory>"#,
        )),
        "payloadFactory",
    );
    assert_unsupported(
        parse(&with_in_sequence(
            r#"<payloadFactory template-type="freemarker"><format/></payloadFactory>"#,
        )),
        "payloadFactory",
    );
    assert_invalid(
        parse(&with_in_sequence(
            r#"<payloadFactory><format key="nope"/></payloadFactory>"#,
        )),
        "format",
        "localEntry `nope`",
    );
}

#[test]
fn filter_regex_is_anchored_and_checked() {
    let Mediator::Filter(filter) = single_mediator(
        r#"<filter source="get-property('transport','X-Env')" regex="prod|stage"><respond/></filter>"#,
    ) else {
        panic!("expected filter");
    };
    let FilterCondition::Regex { source, regex } = &filter.condition else {
        panic!("expected regex");
    };
    assert_eq!(*source, Expression::Header("X-Env".into()));
    assert!(regex.is_match("prod") && regex.is_match("stage"));
    assert!(!regex.is_match("production"));
    // Mediators directly inside the filter are its then branch.
    assert!(matches!(&filter.then[..], [Mediator::Respond]));
    assert!(filter.otherwise.is_empty());

    assert_invalid(
        parse(&with_in_sequence(
            r#"<filter source="$ctx:a" regex="(unclosed"/>"#,
        )),
        "filter",
        "regex",
    );
    assert_invalid(
        parse(&with_in_sequence(r#"<filter regex="a"/>"#)),
        "filter",
        "source",
    );
    assert_invalid(
        parse(&with_in_sequence(
            r#"<filter xpath="$ctx:a"><then/><drop/></filter>"#,
        )),
        "drop",
        "either",
    );
}

#[test]
fn filter_xpath_conditions() {
    let Mediator::Filter(filter) = single_mediator(
        r#"<filter xpath="$ctx:a = 'x' and not($trp:B != &quot;y&quot;)"><then><drop/></then><else><respond/></else></filter>"#,
    ) else {
        panic!("expected filter");
    };
    assert!(matches!(
        filter.condition,
        FilterCondition::XPath(Condition::And(_, _))
    ));
    assert!(matches!(&filter.then[..], [Mediator::Drop]));
    assert!(matches!(&filter.otherwise[..], [Mediator::Respond]));
    assert_unsupported(
        parse(&with_in_sequence(r#"<filter xpath="count(//a) > 1"/>"#)),
        "filter",
    );
}

#[test]
fn send_and_call() {
    let Mediator::Call(EndpointRef::Inline(endpoint)) = single_mediator(
        r#"<call blocking="true"><endpoint name="e"><http method="post" uri-template="https://h/{uri.var.id}/x" format="rest" optimize="false"><timeout><duration> 5000 </duration><responseAction>fault</responseAction></timeout><suspendOnFailure><progressionFactor>1</progressionFactor></suspendOnFailure><markForSuspension/><retryConfig/><enableSecurity/></http><property name="p" value="1"/></endpoint></call>"#,
    ) else {
        panic!("expected call with inline endpoint");
    };
    assert_eq!(endpoint.name.as_deref(), Some("e"));
    assert!(matches!(
        &endpoint.kind,
        EndpointKind::Http { uri_template, method: Some(HttpMethod::Post) }
            if uri_template == "https://h/{uri.var.id}/x"
    ));
    assert_eq!(endpoint.timeout, Some(Duration::from_millis(5000)));
    assert_eq!(endpoint.attributes.len(), 2);
    assert_eq!(endpoint.attributes["format"], "rest");

    assert_invalid(parse(&with_in_sequence("<call/>")), "call", "endpoint");
    let endpoint = r#"<endpoint><address uri="http://a"/></endpoint>"#;
    assert_invalid(
        parse(&with_in_sequence(&format!(
            "<send>{endpoint}{endpoint}</send>"
        ))),
        "endpoint",
        "one <endpoint>",
    );
    assert_unsupported(parse(&with_in_sequence("<send><log/></send>")), "log");
}

#[test]
fn endpoint_validation() {
    let in_send = |endpoint: &str| parse(&with_in_sequence(&format!("<send>{endpoint}</send>")));
    assert_invalid(
        in_send(r#"<endpoint><address uri="ftp://x"/></endpoint>"#),
        "address",
        "http://",
    );
    assert_invalid(
        in_send(r#"<endpoint><http uri-template="{uri.var.host}/x"/></endpoint>"#),
        "http",
        "http://",
    );
    assert_invalid(
        in_send(r#"<endpoint><http uri-template="http://h/{query.x}"/></endpoint>"#),
        "http",
        "placeholder",
    );
    assert_invalid(
        in_send(r#"<endpoint><http uri-template="http://h" method="FETCH"/></endpoint>"#),
        "http",
        "FETCH",
    );
    assert_invalid(
        in_send(
            r#"<endpoint><address uri="http://h"><timeout><duration>soon</duration></timeout></address></endpoint>"#,
        ),
        "duration",
        "soon",
    );
    assert_invalid(in_send("<endpoint/>"), "endpoint", "http");
    for kind in ["wsdl", "loadbalance", "failover", "default"] {
        assert_unsupported(in_send(&format!("<endpoint><{kind}/></endpoint>")), kind);
    }
    assert_unsupported(
        in_send(r#"<endpoint><http uri-template="http://h"><magic/></http></endpoint>"#),
        "magic",
    );
}

#[test]
fn missing_endpoint_key_is_named() {
    let error = parse(&with_in_sequence(
        r#"<send><endpoint key="backend"/></send>"#,
    ))
    .expect_err("missing key");
    assert_invalid::<()>(Err(error.clone()), "endpoint", "`backend`");
    assert_eq!(error.http_status(), 422);
}

#[test]
fn class_mediators_warn_once() {
    let artifact = parse(&with_in_sequence(
        r#"<class name="org.x.A"/><class name="org.x.B"/><class name="org.x.A"/>"#,
    ))
    .expect("valid");
    assert_eq!(
        artifact.warnings,
        vec!["class mediators are accepted but not executed: org.x.A, org.x.B".to_string()]
    );
}

// ---- sequences --------------------------------------------------------------------

fn bundle_with_sequences(sequences: &str, in_sequence: &str) -> String {
    format!(
        r#"<definitions>{sequences}<api name="A" context="/a"><resource><inSequence>{in_sequence}</inSequence></resource></api></definitions>"#
    )
}

#[test]
fn sequence_references() {
    let xml = bundle_with_sequences(
        r#"<sequence name="a"><sequence key="b"/><sequence key="c"/></sequence><sequence name="b"><sequence key="c"/></sequence><sequence name="c"><drop/></sequence>"#,
        r#"<sequence key="a"/>"#,
    );
    let artifact = parse(&xml).expect("a diamond is not a cycle");
    assert_eq!(artifact.sequences.len(), 3);

    assert_invalid(
        parse(&with_in_sequence(r#"<sequence key="missing"/>"#)),
        "sequence",
        "`missing`",
    );
}

#[test]
fn sequence_cycles_are_rejected() {
    let cycle = bundle_with_sequences(
        r#"<sequence name="a"><log/><sequence key="b"/></sequence><sequence name="b"><filter source="$ctx:x" regex="y"><then><sequence key="a"/></then></filter></sequence>"#,
        r#"<sequence key="a"/>"#,
    );
    assert_invalid(parse(&cycle), "sequence", "a -> b -> a");
    let own = bundle_with_sequences(
        r#"<sequence name="self"><sequence key="self"/></sequence>"#,
        "<drop/>",
    );
    assert_invalid(parse(&own), "sequence", "self -> self");
}

#[test]
fn fault_sequence_attribute() {
    let missing = r#"<api name="A" context="/a"><resource faultSequence="oops"/></api>"#;
    assert_invalid(parse(missing), "resource", "`oops`");
    let builtin = r#"<api name="A" context="/a"><resource faultSequence="fault"/></api>"#;
    assert!(matches!(
        parse(builtin).expect("valid").api.resources[0].fault_sequence,
        Some(FaultSequence::BuiltinDefault)
    ));
    let inline = r#"<api name="A" context="/a"><resource><faultSequence><respond/></faultSequence></resource></api>"#;
    assert!(matches!(
        parse(inline).expect("valid").api.resources[0].fault_sequence,
        Some(FaultSequence::Inline(_))
    ));
    let both = r#"<api name="A" context="/a"><resource faultSequence="fault"><faultSequence/></resource></api>"#;
    assert_invalid(parse(both), "faultSequence", "already");
}

// ---- api attributes and resources ----------------------------------------------------

fn context_of(attributes: &str) -> Result<String, ArtifactError> {
    parse(&format!(r#"<api name="A" {attributes}><resource/></api>"#)).map(|a| a.api.context)
}

#[test]
fn context_version_and_normalisation() {
    assert_eq!(
        context_of(r#"context="/shop/{version}" version="2.1""#).expect("valid"),
        "/shop/2.1"
    );
    assert_eq!(context_of(r#"context="/shop/""#).expect("valid"), "/shop");
    assert_eq!(context_of(r#"context="/""#).expect("valid"), "/");
    assert_eq!(
        context_of(r#"context="/s" version-type="url" hostname="h" port="1" transports="http" statistics="enable" trace="disable" publishSwagger="x""#)
            .expect("other attributes are ignored"),
        "/s"
    );
    assert_invalid(context_of(r#"context="/shop/{version}""#), "api", "version");
    assert_invalid(context_of(r#"context="shop""#), "api", "/");
    assert_invalid(context_of(""), "api", "context");
    assert_invalid(
        parse(r#"<api context="/a"><resource/></api>"#),
        "api",
        "name",
    );
    assert_invalid(parse(r#"<api name="A" context="/a"/>"#), "api", "resource");
}

fn matcher_of(attributes: &str) -> Result<ResourceMatcher, ArtifactError> {
    parse(&format!(
        r#"<api name="A" context="/a"><resource {attributes}/></api>"#
    ))
    .map(|artifact| artifact.api.resources[0].matcher.clone())
}

fn mapping_of(raw: &str) -> UrlMapping {
    match matcher_of(&format!(r#"url-mapping="{raw}""#)).expect("valid mapping") {
        ResourceMatcher::UrlMapping(mapping) => mapping,
        other => panic!("expected a url mapping, got {other:?}"),
    }
}

#[test]
fn url_mapping_forms() {
    assert_eq!(mapping_of("/x/*"), UrlMapping::Prefix("/x".into()));
    assert_eq!(mapping_of("/a/b/*"), UrlMapping::Prefix("/a/b".into()));
    assert_eq!(mapping_of("/*"), UrlMapping::Prefix(String::new()));
    assert_eq!(mapping_of("*.jsp"), UrlMapping::Extension(".jsp".into()));
    assert_eq!(mapping_of("/menu"), UrlMapping::Exact("/menu".into()));
    assert!(matches!(
        matcher_of(r#"url-pattern="/old/*""#).expect("valid"),
        ResourceMatcher::UrlMapping(UrlMapping::Prefix(p)) if p == "/old"
    ));
    assert_invalid(matcher_of(r#"url-mapping="/a/*/b""#), "resource", "*");
    assert_invalid(matcher_of(r#"url-mapping="menu""#), "resource", "/");
    assert_invalid(
        matcher_of(r#"uri-template="/a" url-mapping="/a""#),
        "resource",
        "at most one",
    );
}

fn template_of(raw: &str) -> UriTemplate {
    match matcher_of(&format!(r#"uri-template="{raw}""#)).expect("valid template") {
        ResourceMatcher::UriTemplate(template) => template,
        other => panic!("expected a uri template, got {other:?}"),
    }
}

#[test]
fn uri_template_forms() {
    use TemplateSegment::*;
    let items = template_of("/items/{id}/parts");
    assert_eq!(items.raw, "/items/{id}/parts");
    assert_eq!(
        items.segments,
        vec![
            Literal("items".into()),
            Variable("id".into()),
            Literal("parts".into())
        ]
    );
    assert_eq!(
        template_of("/files/{+path}").segments,
        vec![Literal("files".into()), Rest(Some("path".into()))]
    );
    assert_eq!(
        template_of("/all/*").segments,
        vec![Literal("all".into()), Rest(None)]
    );
    assert!(template_of("/").segments.is_empty());
    let search = template_of("/search?q={query}&amp;page={page}");
    assert_eq!(search.segments, vec![Literal("search".into())]);
    assert_eq!(
        search.query,
        vec![
            ("q".to_string(), "query".to_string()),
            ("page".to_string(), "page".to_string())
        ]
    );
    for bad in [
        "items",
        "/a/*/b",
        "/{+rest}/x",
        "/a{id}",
        "/{}",
        "/x?q=1",
        "/{a}/{a}",
    ] {
        assert!(
            matches!(
                matcher_of(&format!(r#"uri-template="{bad}""#)),
                Err(ArtifactError::Invalid { .. })
            ),
            "{bad} should be rejected"
        );
    }
}

#[test]
fn resource_methods() {
    let parse_methods = |methods: &str| {
        parse(&format!(
            r#"<api name="A" context="/a"><resource methods="{methods}"/></api>"#
        ))
        .map(|artifact| artifact.api.resources[0].methods.clone())
    };
    assert_eq!(
        parse_methods("get  Post PUT delete patch head OPTIONS GET").expect("valid"),
        vec![
            HttpMethod::Get,
            HttpMethod::Post,
            HttpMethod::Put,
            HttpMethod::Delete,
            HttpMethod::Patch,
            HttpMethod::Head,
            HttpMethod::Options
        ]
    );
    assert_invalid(parse_methods("GET FETCH"), "resource", "FETCH");
}

#[test]
fn handlers_warn_once() {
    let xml = r#"<api name="A" context="/a"><resource/><handlers><handler class="a.B"><property name="k" value="v"/></handler><handler class="c.D"/></handlers></api>"#;
    let artifact = parse(xml).expect("valid");
    assert_eq!(artifact.api.handlers.len(), 2);
    assert_eq!(artifact.api.handlers[0].properties["k"], "v");
    assert_eq!(
        artifact.warnings,
        vec!["handlers are accepted but not executed: a.B, c.D".to_string()]
    );
}

// ---- expressions ----------------------------------------------------------------------

#[test]
fn expression_forms() {
    use Expression::*;
    let cases: &[(&str, Expression)] = &[
        ("get-property('uri.var.id')", UriVar("id".into())),
        ("get-property(\"query.param.q\")", QueryParam("q".into())),
        (" get-property ( 'SYSTEM_TIME' ) ", SystemTime),
        (
            "get-property('AM_KEY_TYPE')",
            Property("AM_KEY_TYPE".into()),
        ),
        ("get-property('default', 'N')", Property("N".into())),
        (
            "get-property('axis2','HTTP_SC')",
            Property("HTTP_SC".into()),
        ),
        (
            "get-property('transport', 'Content-Type')",
            Header("Content-Type".into()),
        ),
        ("$ctx:AM_KEY_TYPE", Property("AM_KEY_TYPE".into())),
        ("$trp:X-Forwarded-For", Header("X-Forwarded-For".into())),
        ("$url:page", UrlParam("page".into())),
        ("json-eval($)", JsonPath(vec![])),
        (
            "json-eval( $.a.b[0].c )",
            JsonPath(vec![
                JsonPathStep::Field("a".into()),
                JsonPathStep::Field("b".into()),
                JsonPathStep::Index(0),
                JsonPathStep::Field("c".into()),
            ]),
        ),
        (
            "json-eval($['odd key'][12])",
            JsonPath(vec![
                JsonPathStep::Field("odd key".into()),
                JsonPathStep::Index(12),
            ]),
        ),
    ];
    for (raw, expected) in cases {
        assert_eq!(parse_expression(raw).as_ref(), Ok(expected), "{raw}");
    }
}

#[test]
fn rejected_expressions() {
    for raw in [
        "",
        "//m0:symbol",
        "$body",
        "$ctx:",
        "$env:HOME",
        "get-property('registry', 'x')",
        "get-property()",
        "get-property('a', 'b', 'c')",
        "get-property(AM_KEY_TYPE)",
        "get-property('uri.var.')",
        "get-property('a') + 1",
        "json-eval($..a)",
        "json-eval($.a[*])",
        "json-eval($.a[?(@.b)])",
        "json-eval(a.b)",
        "concat('a', 'b')",
    ] {
        assert!(parse_expression(raw).is_err(), "{raw} should be rejected");
    }
    let error = parse(&with_in_sequence(
        r#"<property name="x" expression="//a/b"/>"#,
    ))
    .expect_err("xpath is unsupported");
    let ArtifactError::Unsupported {
        element,
        message,
        supported,
        ..
    } = error
    else {
        panic!("expected Unsupported, got {error:?}");
    };
    assert_eq!(element, "property");
    assert!(message.contains("expression=\"//a/b\""), "{message}");
    assert!(supported.contains("$ctx:NAME"), "{supported}");
    assert_unsupported(
        parse(&with_in_sequence(r#"<filter source="//a" regex="x"/>"#)),
        "filter",
    );
}

#[test]
fn condition_forms() {
    use Condition::*;
    assert!(matches!(
        parse_condition("$ctx:a").expect("valid"),
        Exists(Expression::Property(name)) if name == "a"
    ));
    assert!(matches!(
        parse_condition("get-property('x') = 'y'").expect("valid"),
        Equals(Expression::Property(_), literal) if literal == "y"
    ));
    assert!(matches!(
        parse_condition("'y'!=$trp:H").expect("valid"),
        NotEquals(Expression::Header(_), literal) if literal == "y"
    ));
    // `and` binds tighter than `or`.
    assert!(matches!(
        parse_condition("$ctx:a or $ctx:b and $ctx:c").expect("valid"),
        Or(_, right) if matches!(*right, And(_, _))
    ));
    assert!(matches!(
        parse_condition("($ctx:a or $ctx:b) and not(json-eval($.x) = ')')").expect("valid"),
        And(left, right) if matches!(*left, Or(_, _)) && matches!(*right, Not(_))
    ));
    assert!(matches!(
        parse_condition("$ctx:order").expect("a name starting with or is not `or`"),
        Exists(Expression::Property(name)) if name == "order"
    ));
    for raw in [
        "",
        "'a'",
        "'a' = 'b'",
        "$ctx:a = $ctx:b",
        "$ctx:a >= '1'",
        "count(//a) > 1",
        "($ctx:a",
        "not $ctx:a",
        "$ctx:a and",
        "boolean(//a)",
    ] {
        assert!(parse_condition(raw).is_err(), "{raw} should be rejected");
    }
}

#[test]
fn deep_nesting_is_refused() {
    let deep = format!("{}{}", "<a>".repeat(500), "</a>".repeat(500));
    assert_over_cap(parse(&deep), "max_xml_depth");
    let within = format!("{}{}", "<a>".repeat(199), "</a>".repeat(199));
    assert!(
        !parse(&within)
            .err()
            .is_some_and(|e| e.to_string().contains("max_"))
    );
    let condition = format!("{}$ctx:a{}", "(".repeat(1000), ")".repeat(1000));
    assert!(parse_condition(&condition).is_err());
    let nested = format!("{}$ctx:a{}", "(".repeat(10), ")".repeat(10));
    assert!(parse_condition(&nested).is_ok());
}

// ---- caps ---------------------------------------------------------------------------

/// A 422 whose message names `cap`.
fn assert_over_cap(result: Result<Artifact, ArtifactError>, cap: &str) {
    match result {
        Err(error) => {
            assert_eq!(error.http_status(), 422, "{error}");
            assert!(
                error.to_string().contains(cap),
                "{error} does not name {cap}"
            );
        }
        Ok(_) => panic!("accepted; expected a refusal naming {cap}"),
    }
}

fn payload_with_format(format: &str) -> String {
    with_in_sequence(&format!(
        r#"<payloadFactory media-type="xml"><format>{format}</format><args/></payloadFactory><respond/>"#
    ))
}

#[test]
fn attributes_per_element_are_capped() {
    let attributes: String = (0..300).map(|i| format!(" a{i}=\"x\"")).collect();
    assert_over_cap(
        parse(&payload_with_format(&format!("<item{attributes}/>"))),
        "max_attributes_per_element",
    );
    let within: String = (0..256).map(|i| format!(" a{i}=\"x\"")).collect();
    parse(&payload_with_format(&format!("<item{within}/>"))).expect("within the cap");
    // Duplicates are still found, with quick-xml's position, within the cap.
    assert_eq!(assert_malformed(b"<api a='1' a='2'/>").1, 12);
}

#[test]
fn attributes_are_counted_before_the_duplicate_check() {
    // 300,000 attributes: quick-xml's pairwise duplicate check alone would
    // compare 4.5e10 pairs; the count refuses the tag first.
    let attributes: String = (0..300_000).map(|i| format!(" a{i}='x'")).collect();
    assert_over_cap(
        parse(&payload_with_format(&format!("<item{attributes}/>"))),
        "max_attributes_per_element",
    );
}

#[test]
fn elements_are_capped() {
    assert_over_cap(
        parse(&payload_with_format(&"<x/>".repeat(20_001))),
        "max_elements",
    );
    parse(&payload_with_format(&"<x/>".repeat(10_000))).expect("within the cap");
}

fn chain_of_sequences(links: usize) -> String {
    let sequences: String = (0..links)
        .map(|i| {
            format!(
                r#"<sequence name="s{i}"><sequence key="s{}"/></sequence>"#,
                i + 1
            )
        })
        .collect();
    bundle_with_sequences(
        &format!(r#"{sequences}<sequence name="s{links}"><drop/></sequence>"#),
        r#"<sequence key="s0"/>"#,
    )
}

#[test]
fn bundle_members_are_capped() {
    let sequences: String = (0..1_001)
        .map(|i| format!(r#"<sequence name="s{i}"><drop/></sequence>"#))
        .collect();
    assert_over_cap(
        parse(&bundle_with_sequences(&sequences, "<drop/>")),
        "max_sequences",
    );
    let endpoints: String = (0..1_001)
        .map(|i| format!(r#"<endpoint name="e{i}"><address uri="http://h/{i}"/></endpoint>"#))
        .collect();
    assert_over_cap(
        parse(&bundle_with_sequences(&endpoints, "<drop/>")),
        "max_endpoints",
    );
    let entries: String = (0..1_001)
        .map(|i| format!(r#"<localEntry key="l{i}">x</localEntry>"#))
        .collect();
    assert_over_cap(
        parse(&bundle_with_sequences(&entries, "<drop/>")),
        "max_local_entries",
    );
    let sequences: String = (0..1_000)
        .map(|i| format!(r#"<sequence name="s{i}"><drop/></sequence>"#))
        .collect();
    parse(&bundle_with_sequences(&sequences, "<drop/>")).expect("within the caps");
}

#[test]
fn a_chain_of_200000_sequences_is_refused_by_a_cap() {
    assert_over_cap(parse(&chain_of_sequences(200_000)), "max_elements");
}

fn nested_filters(levels: usize) -> String {
    let open = r#"<filter source="$ctx:x" regex="y"><then>"#.repeat(levels);
    let close = "</then></filter>".repeat(levels);
    format!("{open}<drop/>{close}")
}

#[test]
fn mediation_deeper_than_the_gateway_runs_is_refused() {
    // The inSequence is level 1; 15 filters reach level 16, the gateway's limit.
    parse(&with_in_sequence(&nested_filters(15))).expect("16 levels run");
    assert_over_cap(
        parse(&with_in_sequence(&nested_filters(16))),
        "max_mediation_depth",
    );
    // Sequence references count as filters do: inSequence -> s0 -> .. -> s15.
    parse(&chain_of_sequences(14)).expect("16 levels run");
    assert_over_cap(parse(&chain_of_sequences(15)), "max_mediation_depth");
    // A named sequence is checked on its own too (it may be a fault sequence).
    let unused = bundle_with_sequences(
        &format!(r#"<sequence name="deep">{}</sequence>"#, nested_filters(16)),
        "<drop/>",
    );
    assert_over_cap(parse(&unused), "max_mediation_depth");
    let fault = format!(
        r#"<api name="A" context="/a"><resource><inSequence><drop/></inSequence><faultSequence>{}</faultSequence></resource></api>"#,
        nested_filters(16)
    );
    assert_over_cap(parse(&fault), "max_mediation_depth");
}

#[test]
fn wide_sequence_graphs_are_walked_once_per_sequence() {
    // 14 levels of 30 sequences, each referring to all 30 of the next
    // level: 30^14 paths, 12,000 references. Each sequence is walked once.
    let width = 30;
    let mut sequences = String::new();
    for level in 0..14 {
        for i in 0..width {
            let refs: String = if level == 13 {
                "<drop/>".to_string()
            } else {
                (0..width)
                    .map(|j| format!(r#"<sequence key="l{}_{j}"/>"#, level + 1))
                    .collect()
            };
            sequences.push_str(&format!(
                r#"<sequence name="l{level}_{i}">{refs}</sequence>"#
            ));
        }
    }
    let artifact = parse(&bundle_with_sequences(
        &sequences,
        r#"<sequence key="l0_0"/>"#,
    ))
    .expect("15 levels");
    assert_eq!(artifact.sequences.len(), 14 * width);
}

#[test]
fn endpoint_host_and_port_must_be_literal() {
    let endpoint = |uri: &str| {
        with_in_sequence(&format!(
            r#"<send><endpoint><http uri-template="{uri}"/></endpoint></send>"#
        ))
    };
    for uri in [
        "http://{uri.var.host}/items",
        "https://{uri.var.host}",
        "http://backend:{uri.var.port}/items",
        "http://{uri.var.user}@backend/items",
        "http://backend.{uri.var.zone}.example/items",
    ] {
        assert_invalid(parse(&endpoint(uri)), "http", "host or port");
    }
    let address = with_in_sequence(
        r#"<send><endpoint><address uri="http://{uri.var.host}/x"/></endpoint></send>"#,
    );
    assert_invalid(parse(&address), "address", "host or port");
    parse(&endpoint(
        "http://backend:8080/items/{uri.var.id}?q={uri.var.q}#{uri.var.f}",
    ))
    .expect("placeholders in path and query");
}
