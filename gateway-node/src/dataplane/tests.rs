//! Unit tests of the data plane's pieces, on model values built by hand.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use artisync_domain::{ApiId, Revision, Sha256Digest};
use artisync_synapse::{
    Api, Artifact, Condition, Endpoint, EndpointKind, Expression, FilterCondition, HttpMethod,
    JsonPathStep, MediaType, Resource, ResourceMatcher, TemplateSegment, UriTemplate, UrlMapping,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use regex::Regex;

use super::body::Body;
use super::context::{MessageContext, Postfix};
use super::expression::{Value, evaluate_text, filter_matches, push_json_escaped, render_payload};
use super::headers::strip_hop_by_hop;
use super::matcher::{
    ResourceMatch, UriVars, allow_header, match_mapping, match_resource, match_template,
    methods_mask, percent_decode, query_param,
};
use super::proxy::{append_postfix, endpoint_url};
use super::routing::{CompiledApi, RoutingTable};

fn template(raw: &str) -> UriTemplate {
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s == "*" {
                TemplateSegment::Rest(None)
            } else if let Some(v) = s.strip_prefix("{+").and_then(|v| v.strip_suffix('}')) {
                TemplateSegment::Rest(Some(v.to_owned()))
            } else if let Some(v) = s.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                TemplateSegment::Variable(v.to_owned())
            } else {
                TemplateSegment::Literal(s.to_owned())
            }
        })
        .collect();
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), v.trim_matches(['{', '}']).to_owned())
        })
        .collect();
    UriTemplate {
        raw: raw.to_owned(),
        segments,
        query,
    }
}

fn resource(methods: &[HttpMethod], matcher: ResourceMatcher) -> Resource {
    Resource {
        methods: methods.to_vec(),
        matcher,
        in_sequence: None,
        out_sequence: None,
        fault_sequence: None,
    }
}

fn artifact(name: &str, context: &str, resources: Vec<Resource>) -> Artifact {
    Artifact {
        api: Api {
            name: name.to_owned(),
            version: Some("1.0.0".to_owned()),
            context: context.to_owned(),
            resources,
            handlers: Vec::new(),
        },
        endpoints: BTreeMap::new(),
        sequences: BTreeMap::new(),
        local_entries: BTreeMap::new(),
        warnings: Vec::new(),
    }
}

fn compiled(name: &str, context: &str) -> Arc<CompiledApi> {
    Arc::new(CompiledApi::new(
        ApiId::new_random(),
        Revision::FIRST,
        Sha256Digest::of(name.as_bytes()),
        artifact(name, context, Vec::new()),
        Default::default(),
    ))
}

fn context<'a>(
    api: &'a CompiledApi,
    method: &'a Method,
    remainder: &'a str,
    query: Option<&'a str>,
    vars: UriVars<'a>,
) -> MessageContext<'a> {
    let mut headers = HeaderMap::new();
    headers.insert("x-user", HeaderValue::from_static("alice"));
    MessageContext::new(
        api,
        method,
        remainder,
        remainder,
        query,
        vars,
        headers,
        Body::Empty,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        1024,
    )
}

fn http_endpoint(uri_template: &str) -> Endpoint {
    Endpoint {
        name: None,
        kind: EndpointKind::Http {
            uri_template: uri_template.to_owned(),
            method: None,
        },
        timeout: None,
        attributes: BTreeMap::new(),
    }
}

// ---------------------------------------------------------------- matching

#[test]
fn templates_fill_percent_decoded_variables() {
    let t = template("/order/{orderId}/items/{item}");
    let mut vars = UriVars::new();
    assert!(match_template(
        &t,
        "/order/12%2F3/items/a%20b",
        None,
        &mut vars
    ));
    assert_eq!(
        vars,
        vec![
            ("orderId", Cow::Borrowed("12/3")),
            ("item", Cow::Owned("a b".into()))
        ]
    );

    let mut vars = UriVars::new();
    assert!(
        match_template(&t, "/order/1/items/2/", None, &mut vars),
        "a trailing slash is tolerated"
    );
    vars.clear();
    assert!(!match_template(&t, "/order/1/items", None, &mut vars));
    assert!(
        !match_template(&t, "/order//items/2", None, &mut vars),
        "a variable is never empty"
    );
    assert!(!match_template(&t, "/order/1/items/2/3", None, &mut vars));
    assert!(vars.is_empty(), "failed matches leave no variables behind");
}

#[test]
fn template_rest_and_query_variables() {
    let rest = template("/files/{+path}");
    let mut vars = UriVars::new();
    assert!(match_template(&rest, "/files/a/b/c.txt", None, &mut vars));
    assert_eq!(vars[0].1, "a/b/c.txt");

    let star = template("/all/*");
    assert!(match_template(&star, "/all/x/y", None, &mut UriVars::new()));
    assert!(!match_template(&star, "/other", None, &mut UriVars::new()));

    let search = template("/search?q={query}&page={page}");
    let mut vars = UriVars::new();
    assert!(match_template(
        &search,
        "/search",
        Some("page=2&q=pizza+hut%21"),
        &mut vars
    ));
    assert_eq!(
        vars,
        vec![
            ("query", Cow::Owned::<str>("pizza hut!".into())),
            ("page", Cow::Borrowed("2"))
        ]
    );
    assert!(
        !match_template(&search, "/search", Some("q=x"), &mut UriVars::new()),
        "template query parameters are required"
    );

    let root = template("/");
    assert!(match_template(&root, "", None, &mut UriVars::new()));
    assert!(match_template(&root, "/", None, &mut UriVars::new()));
    assert!(!match_template(&root, "/x", None, &mut UriVars::new()));
}

#[test]
fn url_mappings_exact_prefix_and_extension() {
    let exact = UrlMapping::Exact("/menu".into());
    assert!(match_mapping(&exact, "/menu"));
    assert!(match_mapping(&exact, "/menu/"));
    assert!(!match_mapping(&exact, "/menu/x"));
    assert!(!match_mapping(&exact, "/menus"));

    let prefix = UrlMapping::Prefix("/order".into());
    assert!(match_mapping(&prefix, "/order"));
    assert!(match_mapping(&prefix, "/order/1/2"));
    assert!(!match_mapping(&prefix, "/orders"));
    assert!(match_mapping(
        &UrlMapping::Prefix(String::new()),
        "/anything"
    ));

    let ext = UrlMapping::Extension(".jsp".into());
    assert!(match_mapping(&ext, "/a/b/page.jsp"));
    assert!(!match_mapping(&ext, "/a/b/page.jspx"));
    assert!(!match_mapping(&ext, "/a.jsp/b"));
}

#[test]
fn resources_match_in_document_order_and_report_allowed_methods() {
    let resources = vec![
        resource(
            &[HttpMethod::Get],
            ResourceMatcher::UriTemplate(template("/order/{id}")),
        ),
        resource(
            &[HttpMethod::Put, HttpMethod::Delete],
            ResourceMatcher::UriTemplate(template("/order/{orderId}")),
        ),
        resource(
            &[],
            ResourceMatcher::UrlMapping(UrlMapping::Prefix("/any".into())),
        ),
    ];
    let masks: Vec<u8> = resources.iter().map(|r| methods_mask(&r.methods)).collect();

    match match_resource(
        &resources,
        &masks,
        Some(HttpMethod::Delete),
        "/order/7",
        None,
    ) {
        ResourceMatch::Found { index, vars } => {
            assert_eq!(index, 1);
            assert_eq!(vars, vec![("orderId", Cow::Borrowed("7"))]);
        }
        other => panic!("unexpected {other:?}"),
    }
    match match_resource(&resources, &masks, Some(HttpMethod::Post), "/order/7", None) {
        ResourceMatch::MethodNotAllowed { allowed } => {
            assert_eq!(allow_header(allowed), "GET, PUT, DELETE")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        match_resource(&resources, &masks, None, "/any/x", None),
        ResourceMatch::Found { index: 2, .. }
    ));
    assert!(matches!(
        match_resource(&resources, &masks, Some(HttpMethod::Get), "/nothing", None),
        ResourceMatch::NotFound
    ));
}

#[test]
fn percent_decoding_borrows_when_it_can_and_never_fails() {
    assert!(matches!(
        percent_decode("plain", false),
        Cow::Borrowed("plain")
    ));
    assert_eq!(percent_decode("a%20b%2fc", false), "a b/c");
    assert_eq!(percent_decode("a+b", false), "a+b");
    assert_eq!(percent_decode("a+b", true), "a b");
    assert_eq!(percent_decode("100%", false), "100%");
    assert_eq!(percent_decode("%zz%4", false), "%zz%4");
    assert_eq!(percent_decode("%C3%A9", false), "é");
    assert_eq!(percent_decode("%FF", false), "\u{FFFD}");
    assert_eq!(query_param("a=1&b=x%20y&b=2", "b").as_deref(), Some("x y"));
    assert_eq!(query_param("flag&a=1", "flag").as_deref(), Some(""));
    assert_eq!(query_param("a=1", "c"), None);
}

// ----------------------------------------------------------------- routing

#[test]
fn the_longest_context_wins_at_a_segment_boundary() {
    let a = compiled("a", "/a");
    let ab = compiled("ab", "/a/b");
    let pizza = compiled("pizza", "/pizzashack/1.0.0");
    let table = RoutingTable::from_apis([a.clone(), ab.clone(), pizza.clone()]);
    let route = |path: &'static str| {
        table
            .route(path)
            .map(|(api, start)| (api.name().to_owned(), &path[start..]))
    };

    assert_eq!(route("/a/b/c"), Some(("ab".into(), "/c")));
    assert_eq!(route("/a/b"), Some(("ab".into(), "")));
    assert_eq!(route("/a/bc"), Some(("a".into(), "/bc")));
    assert_eq!(route("/a/"), Some(("a".into(), "/")));
    assert_eq!(
        route("/pizzashack/1.0.0/menu"),
        Some(("pizza".into(), "/menu"))
    );
    assert_eq!(route("/pizzashack/1.0.01"), None);
    assert_eq!(route("/ab"), None);
    assert_eq!(route("/"), None);

    let rooted = table.with_api(compiled("root", "/"));
    assert_eq!(
        rooted.route("/ab").map(|(api, start)| (api.name(), start)),
        Some(("root", 0))
    );
    assert_eq!(rooted.route("/a/x").map(|(api, _)| api.name()), Some("a"));
}

#[test]
fn tables_replace_by_id_and_by_context() {
    let first = compiled("first", "/shop");
    let table = RoutingTable::empty().with_api(first.clone());
    assert_eq!(table.len(), 1);

    // A new revision of the same API, at a new context.
    let moved = Arc::new(CompiledApi::new(
        first.api_id,
        Revision::FIRST.next(),
        Sha256Digest::of(b"moved"),
        artifact("first", "/store", Vec::new()),
        Default::default(),
    ));
    let table = table.with_api(moved);
    assert_eq!(table.len(), 1);
    assert!(table.route("/shop/x").is_none());
    assert_eq!(
        table.get(&first.api_id).map(|a| a.revision),
        Some(Revision::FIRST.next())
    );

    // Another API taking the same context replaces it.
    let intruder = compiled("intruder", "/store");
    let table = table.with_api(intruder.clone());
    assert_eq!(table.len(), 1);
    assert!(table.get(&first.api_id).is_none());
    assert_eq!(
        table.route("/store").map(|(a, _)| a.api_id),
        Some(intruder.api_id)
    );

    let empty = table.without_api(&intruder.api_id);
    assert!(empty.is_empty());
    assert!(empty.route("/store").is_none());
    assert_eq!(table.len(), 1, "the old table is untouched");
    assert_eq!(empty.without_api(&intruder.api_id).len(), 0);
}

#[test]
fn a_table_of_ten_thousand_apis_routes_by_prefix_lookup() {
    let table = RoutingTable::from_apis(
        (0..10_000).map(|i| compiled(&format!("api{i}"), &format!("/svc{i}/v1"))),
    );
    assert_eq!(table.len(), 10_000);
    assert_eq!(
        table.route("/svc9999/v1/items/1").map(|(a, _)| a.name()),
        Some("api9999")
    );
    assert!(table.route("/svc10000/v1").is_none());
}

// ------------------------------------------------------------ URL building

#[test]
fn postfixes_join_without_double_slashes() {
    assert_eq!(
        append_postfix("http://b/api", "/menu", None),
        "http://b/api/menu"
    );
    assert_eq!(
        append_postfix("http://b/api/", "/menu", None),
        "http://b/api/menu"
    );
    assert_eq!(
        append_postfix("http://b/api", "menu", None),
        "http://b/api/menu"
    );
    assert_eq!(
        append_postfix("http://b/api", "", Some("x=1")),
        "http://b/api?x=1"
    );
    assert_eq!(
        append_postfix("http://b/api?k=v", "/m", Some("x=1")),
        "http://b/api/m?k=v&x=1"
    );
    assert_eq!(append_postfix("http://b", "/m", Some("")), "http://b/m");
}

#[test]
fn endpoint_urls_fill_encoded_variables_or_append_the_postfix() {
    let api = compiled("shop", "/shop");
    let get = Method::GET;
    let vars: UriVars<'_> = vec![("id", Cow::Borrowed("a b/c")), ("q", Cow::Borrowed("x&y"))];
    let mut ctx = context(&api, &get, "/items/a%20b%2Fc", Some("page=2"), vars);

    let templated = http_endpoint("http://backend/items/{uri.var.id}/detail?q={uri.var.q}");
    assert_eq!(
        endpoint_url(&templated, &ctx),
        "http://backend/items/a%20b%2Fc/detail?q=x%26y"
    );
    let templated_no_query = http_endpoint("http://backend/items/{uri.var.id}");
    assert_eq!(
        endpoint_url(&templated_no_query, &ctx),
        "http://backend/items/a%20b%2Fc?page=2"
    );
    let unknown = http_endpoint("http://backend/{uri.var.missing}x");
    assert_eq!(endpoint_url(&unknown, &ctx), "http://backend/x?page=2");

    let plain = http_endpoint("http://backend/api/");
    assert_eq!(
        endpoint_url(&plain, &ctx),
        "http://backend/api/items/a%20b%2Fc?page=2"
    );
    let address = Endpoint {
        kind: EndpointKind::Address {
            uri: "http://backend/svc".into(),
        },
        ..http_endpoint("")
    };
    assert_eq!(
        endpoint_url(&address, &ctx),
        "http://backend/svc/items/a%20b%2Fc?page=2"
    );

    ctx.postfix = Postfix::Removed;
    assert_eq!(endpoint_url(&address, &ctx), "http://backend/svc");
    ctx.postfix = Postfix::Set("/other?z=1".into());
    assert_eq!(endpoint_url(&address, &ctx), "http://backend/svc/other?z=1");
}

#[test]
fn hop_by_hop_headers_are_stripped() {
    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic x"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("x-kept", "yes"),
    ] {
        headers.insert(k, HeaderValue::from_static(v));
    }
    strip_hop_by_hop(&mut headers);
    assert_eq!(headers.len(), 1);
    assert_eq!(headers["x-kept"], "yes");
}

// ------------------------------------------------------------- expressions

#[test]
fn expressions_read_vars_query_properties_headers_and_json() {
    let api = compiled("shop", "/shop");
    let get = Method::GET;
    let mut ctx = context(
        &api,
        &get,
        "/items/7",
        Some("lang=en+GB"),
        vec![("id", Cow::Borrowed("7"))],
    );
    ctx.set_property(Cow::Borrowed("custom"), "value".into());
    ctx.body = Body::Full(Bytes::from_static(
        br#"{"a": {"b": [10, {"c": "deep"}]}, "n": null}"#,
    ));

    let eval =
        |e: Expression, ctx: &MessageContext<'_>| evaluate_text(&e, ctx).map(Cow::into_owned);
    assert_eq!(
        eval(Expression::UriVar("id".into()), &ctx).as_deref(),
        Some("7")
    );
    assert_eq!(eval(Expression::UriVar("nope".into()), &ctx), None);
    assert_eq!(
        eval(Expression::QueryParam("lang".into()), &ctx).as_deref(),
        Some("en GB")
    );
    assert_eq!(
        eval(Expression::UrlParam("lang".into()), &ctx).as_deref(),
        Some("en GB")
    );
    assert_eq!(
        eval(Expression::Property("custom".into()), &ctx).as_deref(),
        Some("value")
    );
    assert_eq!(eval(Expression::Property("AM_KEY_TYPE".into()), &ctx), None);
    assert_eq!(
        eval(Expression::Property("SYNAPSE_REST_API".into()), &ctx).as_deref(),
        Some("shop")
    );
    assert_eq!(
        eval(Expression::Header("X-User".into()), &ctx).as_deref(),
        Some("alice")
    );
    let steps = vec![
        JsonPathStep::Field("a".into()),
        JsonPathStep::Field("b".into()),
        JsonPathStep::Index(1),
        JsonPathStep::Field("c".into()),
    ];
    assert_eq!(
        eval(Expression::JsonPath(steps), &ctx).as_deref(),
        Some("deep")
    );
    let number = vec![
        JsonPathStep::Field("a".into()),
        JsonPathStep::Field("b".into()),
        JsonPathStep::Index(0),
    ];
    assert_eq!(
        eval(Expression::JsonPath(number), &ctx).as_deref(),
        Some("10")
    );
    assert_eq!(
        eval(
            Expression::JsonPath(vec![JsonPathStep::Field("zz".into())]),
            &ctx
        ),
        None
    );

    let now: u128 = eval(Expression::SystemTime, &ctx).unwrap().parse().unwrap();
    assert!(now > 1_600_000_000_000);
}

#[test]
fn filters_match_whole_values_and_unset_sources_take_else() {
    let api = compiled("shop", "/shop");
    let get = Method::GET;
    let mut ctx = context(&api, &get, "/", None, Vec::new());
    let condition = FilterCondition::Regex {
        source: Expression::Property("AM_KEY_TYPE".into()),
        regex: Regex::new("PRODUCTION").unwrap(),
    };
    assert!(
        !filter_matches(&condition, &ctx),
        "unset key type takes the else branch"
    );
    ctx.set_property(Cow::Borrowed("AM_KEY_TYPE"), "PRODUCTION".into());
    assert!(filter_matches(&condition, &ctx));
    ctx.set_property(Cow::Borrowed("AM_KEY_TYPE"), "NOT_PRODUCTION".into());
    assert!(
        !filter_matches(&condition, &ctx),
        "the regex must match the whole value"
    );

    let xpath = FilterCondition::XPath(Condition::And(
        Box::new(Condition::Exists(Expression::Header("x-user".into()))),
        Box::new(Condition::Not(Box::new(Condition::Equals(
            Expression::Property("AM_KEY_TYPE".into()),
            "PRODUCTION".into(),
        )))),
    ));
    assert!(filter_matches(&xpath, &ctx));
}

// --------------------------------------------------------------- payloads

#[test]
fn json_payload_arguments_are_escaped_as_string_content() {
    let args = vec![
        Some(Value::Text(Cow::Borrowed("say \"hi\"\\\n\u{1}é"))),
        Some(Value::Json(serde_json::json!({"k": [1, 2]}))),
        Some(Value::Json(serde_json::json!("a\"b"))),
        None,
    ];
    let out = render_payload(
        r#"{"t": "$1", "o": $2, "s": "$3", "n": "$4", "x": "$5 $0 $"}"#,
        MediaType::Json,
        &args,
    );
    assert_eq!(
        out,
        r#"{"t": "say \"hi\"\\\n\u0001é", "o": {"k":[1,2]}, "s": "a\"b", "n": "", "x": "$5 $0 $"}"#
    );
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["t"], "say \"hi\"\\\n\u{1}é");

    let mut escaped = String::new();
    push_json_escaped(&mut escaped, "\t\r\u{8}\u{c}\u{1f}");
    assert_eq!(escaped, "\\t\\r\\b\\f\\u001f");
}

#[test]
fn xml_and_text_payloads_and_multi_digit_placeholders() {
    let args: Vec<_> = (1..=10)
        .map(|i| Some(Value::Text(Cow::Owned(format!("v{i}")))))
        .collect();
    assert_eq!(
        render_payload("$1-$10-$2", MediaType::Text, &args),
        "v1-v10-v2"
    );

    let xml_args = vec![Some(Value::Text(Cow::Borrowed("<IBM & \"co\">")))];
    assert_eq!(
        render_payload("<m:symbol>$1</m:symbol>", MediaType::Xml, &xml_args),
        "<m:symbol>&lt;IBM &amp; &quot;co&quot;&gt;</m:symbol>"
    );
    assert_eq!(render_payload("cost: $", MediaType::Text, &[]), "cost: $");
}
