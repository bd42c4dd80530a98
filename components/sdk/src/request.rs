//! Requests as plain values: method, path, query, headers and a read body.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::str::FromStr;

/// An HTTP method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// HEAD
    Head,
    /// OPTIONS
    Options,
    /// Any other method, by name.
    Other(String),
}

impl Method {
    /// The method's name, e.g. `GET`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
            Self::Options => "OPTIONS",
            Self::Other(name) => name,
        }
    }
}

/// A request with its body read.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, without the query, still percent-encoded.
    pub path: String,
    /// The query string, without `?`, still percent-encoded.
    pub query: Option<String>,
    /// Headers in arrival order; names are lowercase.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
    /// Path parameters filled in by the router, percent-decoded.
    pub(crate) params: Vec<(String, String)>,
}

impl Request {
    /// A request for `target` (a path with an optional `?query`), with no
    /// headers or body yet.
    pub fn new(method: Method, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (target, None),
        };
        Self {
            method,
            path: path.to_owned(),
            query,
            headers: Vec::new(),
            body: Vec::new(),
            params: Vec::new(),
        }
    }

    /// A path parameter, e.g. `id` of `/users/{id}`, percent-decoded.
    pub fn param(&self, name: &str) -> Result<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Error::internal(format!("route has no parameter `{name}`")))
    }

    /// A path parameter parsed as `T`; a 400 naming it if it does not parse.
    pub fn param_as<T: FromStr>(&self, name: &str) -> Result<T> {
        let value = self.param(name)?;
        value.parse().map_err(|_| {
            Error::bad_request(format!("path parameter `{name}` is invalid: `{value}`"))
        })
    }

    /// The first value of query parameter `name`, percent-decoded with `+`
    /// as a space (invalid UTF-8 becomes U+FFFD). `?flag` gives `""`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every query parameter in order, decoded as by [`Request::query_param`].
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .map(|q| crate::percent::query_pairs(q).collect())
            .unwrap_or_default()
    }

    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body parsed as JSON; a 400 naming the problem if it does not fit `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }
}
