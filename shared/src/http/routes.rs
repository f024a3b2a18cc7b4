use std::collections::BTreeMap;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

/// Builds a router and remembers every (method, path) it serves, so that tests can check
/// the router against `template.yaml` in both directions.
pub struct RouteTable<S> {
    routes: BTreeMap<&'static str, MethodRouter<S>>,
    list: Vec<(Method, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Default for RouteTable<S> {
    fn default() -> Self {
        RouteTable { routes: BTreeMap::new(), list: Vec::new() }
    }
}

impl<S: Clone + Send + Sync + 'static> RouteTable<S> {
    pub fn new() -> Self {
        Self::default()
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        let mr = on(filter, handler);
        let merged = match self.routes.remove(path) {
            Some(existing) => existing.merge(mr),
            None => mr,
        };
        self.routes.insert(path, merged);
        self.list.push((method, path));
        self
    }

    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::GET, path, h)
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::POST, path, h)
    }

    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::PUT, path, h)
    }

    pub fn head<H: Handler<T, S>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::HEAD, path, h)
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::DELETE, path, h)
    }

    /// Every (method, path) pair, in the order they were added.
    pub fn list(&self) -> Vec<(Method, &'static str)> {
        self.list.clone()
    }

    pub fn into_router(self) -> Router<S> {
        self.routes.into_iter().fold(Router::new(), |r, (path, mr)| r.route(path, mr))
    }
}
