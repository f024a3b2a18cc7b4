//! A small element tree read from XML with quick-xml: no DTD (a document that declares
//! one is refused, so no entity of its can be expanded), no entities but XML's five and
//! character references, bounded depth and element count. Names are local names; each
//! element keeps the namespace its name resolves to.
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The deepest nesting read.
const MAX_DEPTH: usize = 64;
/// The most elements one document holds.
const MAX_ELEMENTS: usize = 100_000;

#[derive(Debug, Default, Clone)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
    /// Attributes by local name (namespace declarations left out).
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The element's own text, CDATA included, trimmed.
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first direct child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The trimmed text of the first direct child named `name`, when it has some.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str()).filter(|t| !t.is_empty())
    }

    /// Every element named `name` below this one, in document order.
    pub fn descendants<'a>(&'a self, name: &'a str) -> Box<dyn Iterator<Item = &'a Element> + 'a> {
        Box::new(
            self.children
                .iter()
                .flat_map(move |c| std::iter::once(c).filter(move |c| c.name == name).chain(c.descendants(name))),
        )
    }
}

/// Parses `bytes` (UTF-8) into its root element. `what` names the document in errors.
pub fn parse(bytes: &[u8], what: &str) -> Result<Element, String> {
    let bad = |m: String| format!("{what} is not well-formed XML: {m}");
    let mut reader = NsReader::from_reader(bytes);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| bad(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(format!("{what} declares a DTD: DTDs and their entities are not accepted")),
            Event::Start(e) => {
                if root.is_some() {
                    return Err(bad("content after the root element".into()));
                }
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(format!("{what} nests deeper than {MAX_DEPTH} or holds over {MAX_ELEMENTS} elements"));
                }
                let ns = match ns {
                    ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
                    ResolveResult::Unbound => None,
                    ResolveResult::Unknown(p) => {
                        return Err(bad(format!("undeclared namespace prefix '{}'", String::from_utf8_lossy(&p))))
                    }
                };
                let name = std::str::from_utf8(e.local_name().as_ref()).map_err(|_| bad("a name is not UTF-8".into()))?.to_string();
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.map_err(|e| bad(e.to_string()))?;
                    let key = a.key;
                    if key.as_ref() == b"xmlns" || key.as_ref().starts_with(b"xmlns:") {
                        continue;
                    }
                    let k = std::str::from_utf8(key.local_name().as_ref())
                        .map_err(|_| bad("an attribute name is not UTF-8".into()))?
                        .to_string();
                    let v = a.unescape_value().map_err(|e| bad(e.to_string()))?.into_owned();
                    attrs.push((k, v));
                }
                stack.push(Element { ns, name, attrs, ..Default::default() });
            }
            Event::End(_) => {
                let mut done = stack.pop().ok_or_else(|| bad("an end tag without a start".into()))?;
                done.text = done.text.trim().to_string();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| bad(e.to_string()))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(bad("text outside the root element".into())),
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(|e| bad(e.to_string()))?;
                stack.last_mut().ok_or_else(|| bad("CDATA outside the root element".into()))?.text.push_str(&text);
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| bad(e.to_string()))?.map(String::from)
                } else {
                    let name = r.decode().map_err(|e| bad(e.to_string()))?;
                    quick_xml::escape::resolve_predefined_entity(&name).map(String::from)
                };
                let text = resolved.ok_or_else(|| {
                    format!("{what} refers to an entity XML does not define: only &lt; &gt; &amp; &apos; &quot; and character references are accepted")
                })?;
                stack.last_mut().ok_or_else(|| bad("a reference outside the root element".into()))?.text.push_str(&text);
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::Empty(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(bad("the document ends inside an element".into()));
    }
    root.ok_or_else(|| bad("no root element".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_namespaces_attributes_and_text() {
        let doc = br#"<?xml version="1.0"?><a:application xmlns:a="urn:x" version="2.0"><a:name>W &amp; P &#x41;<![CDATA[<b>]]></a:name><x/></a:application>"#;
        let root = parse(doc, "APP-META.xml").unwrap();
        assert_eq!((root.ns.as_deref(), root.name.as_str(), root.attr("version")), (Some("urn:x"), "application", Some("2.0")));
        assert_eq!(root.child_text("name"), Some("W & P A<b>"));
        assert_eq!(root.child("x").unwrap().ns, None);
    }

    #[test]
    fn refuses_dtds_entities_and_broken_documents() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(parse(bomb, "APP-META.xml").unwrap_err().contains("DTD"));
        assert!(parse(b"<a>&nbsp;</a>", "x").unwrap_err().contains("entity"));
        for broken in [&b"<a><b></a>"[..], b"<a>", b"", b"text", b"<a/><b/>", b"<p:a/>"] {
            assert!(parse(broken, "x").is_err(), "{}", String::from_utf8_lossy(broken));
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(deep.as_bytes(), "x").unwrap_err().contains("deeper"));
    }
}
