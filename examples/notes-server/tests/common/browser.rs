//! A browser for the sign-in and consent pages, without a browser: cookies kept by hand,
//! redirects never followed. Shared by the examples' tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

/// A browser that keeps cookies by hand and never follows redirects. A clone is a copy of its
/// cookie jar, as someone who copied the cookies would hold.
#[derive(Clone)]
pub struct Browser {
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, cookies: Vec::new() }
    }

    fn keep_cookies(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            self.cookies.push((k.to_owned(), v.to_owned()));
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub async fn get(&mut self, url: &str) -> (reqwest::StatusCode, String, Option<String>) {
        let resp = self.http.get(url).header("cookie", self.cookie_header()).send().await.unwrap();
        self.finish(resp).await
    }

    pub async fn post_form(
        &mut self,
        url: &str,
        fields: &[(&str, &str)],
    ) -> (reqwest::StatusCode, String, Option<String>) {
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let resp = self
            .http
            .post(url)
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    async fn finish(&mut self, resp: reqwest::Response) -> (reqwest::StatusCode, String, Option<String>) {
        self.keep_cookies(&resp);
        let status = resp.status();
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        (status, resp.text().await.unwrap(), location)
    }
}

/// The text after `marker` up to the next quote, HTML slashes decoded.
pub fn attribute(page: &str, marker: &str) -> String {
    let start = page.find(marker).unwrap_or_else(|| panic!("{marker} not in page:\n{page}")) + marker.len();
    page[start..].split('"').next().unwrap().replace("&#x2f;", "/").replace("&#47;", "/")
}

impl Browser {
    /// [`Self::sign_in_and_approve_at`] as the user `username`.
    pub async fn sign_in_and_approve_as(
        &mut self,
        base_url: &str,
        auth_url: &str,
        username: &str,
        password: &str,
    ) -> String {
        let (status, page, _) = self.get(auth_url).await;
        assert_eq!(status, 200, "{page}");
        let action = format!("{base_url}{}", attribute(&page, "action=\""));
        let pending = attribute(&page, "name=\"pending\" value=\"");
        let csrf = attribute(&page, "name=\"csrf\" value=\"");
        let (status, consent, _) = self
            .post_form(
                &action,
                &[("pending", &pending), ("csrf", &csrf), ("username", username), ("password", password)],
            )
            .await;
        assert_eq!(status, 200, "{consent}");
        let action = format!("{base_url}{}", attribute(&consent, "action=\""));
        let csrf = attribute(&consent, "name=\"csrf\" value=\"");
        let (status, _, location) =
            self.post_form(&action, &[("pending", &pending), ("csrf", &csrf), ("decision", "approve")]).await;
        assert_eq!(status, 303);
        location.expect("a redirect to the client")
    }
}
