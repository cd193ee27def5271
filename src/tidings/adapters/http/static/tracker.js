/*
 * Tidings JavaScript tracker: Brevo's push-queue calls, posting to this daemon's tracker API.
 *
 *   <script src="https://tidings.example.com/js/tracker.js" async></script>
 *   <script>
 *     window.Brevo = window.Brevo || [];
 *     Brevo.push(["init", { client_key: "tdg_trk_..." }]);       // a tracker key (public)
 *     Brevo.push(["identify", "jane@example.org", { FIRSTNAME: "Jane" }]);
 *     Brevo.push(["track", "cart_updated", { CART: 2 }, { id: "cart:1234:v2", data: { total: 280 } }]);
 *     Brevo.push(["page", "Checkout", { ma_title: document.title }]);
 *     Brevo.push(["trackLink", "https://example.com/guide.pdf", {}]);
 *   </script>
 *
 * Calls made before the script loads wait in the array; calls that need a visitor (all but
 * init) wait until one is identified (init's `email_id`, an `identify`, or an earlier visit
 * remembered in localStorage). Each call is one POST; network errors, 429 and 5xx are retried
 * with the same body, which the daemon stores once. The legacy `sendinblue.track(...)` style
 * works too.
 */
(function (root) {
  "use strict";

  var STORAGE_KEY = "tidings_email";
  var MAX_WAITING = 100;
  var RETRIES = 3;

  var state = {
    key: null,
    endpoint: null,
    email: null,
    waiting: [],
    inflight: [],
  };

  function scriptEndpoint() {
    var doc = root.document;
    var script = doc && doc.currentScript;
    if (script && script.src) {
      return script.src.replace(/\/js\/tracker\.js(\?.*)?$/, "");
    }
    return "";
  }

  function remembered() {
    try {
      return root.localStorage ? root.localStorage.getItem(STORAGE_KEY) : null;
    } catch (e) {
      return null; // storage disabled: identify again on each page
    }
  }

  function remember(email) {
    try {
      if (root.localStorage) root.localStorage.setItem(STORAGE_KEY, email);
    } catch (e) {
      /* storage disabled */
    }
  }

  function wait(ms) {
    return new Promise(function (resolve) {
      setTimeout(resolve, ms);
    });
  }

  function post(path, body) {
    // One body string for every attempt: a retry is byte-identical, so it is stored once.
    var payload = JSON.stringify(body);
    var attempt = function (n) {
      return root
        .fetch(state.endpoint + path, {
          method: "POST",
          headers: { "content-type": "application/json", "ma-key": state.key },
          body: payload,
          keepalive: true,
          credentials: "omit",
        })
        .then(
          function (response) {
            var retryable = response.status === 429 || response.status >= 500;
            if (retryable && n < RETRIES) return wait(500 * Math.pow(2, n)).then(function () {
              return attempt(n + 1);
            });
            if (!response.ok && root.console) {
              root.console.warn("tidings tracker: " + path + " answered " + response.status);
            }
            return response.status;
          },
          function (error) {
            if (n < RETRIES) return wait(500 * Math.pow(2, n)).then(function () {
              return attempt(n + 1);
            });
            if (root.console) root.console.warn("tidings tracker: " + path + " failed", error);
            return 0;
          }
        );
    };
    var sent = attempt(0);
    state.inflight.push(sent);
    return sent;
  }

  function withEmail(build) {
    if (!state.key) {
      state.waiting.push(build);
      return;
    }
    if (!state.email) {
      if (state.waiting.length < MAX_WAITING) state.waiting.push(build);
      return;
    }
    var request = build(state.email);
    post(request[0], request[1]);
  }

  function release() {
    if (!state.key || !state.email) return;
    var queued = state.waiting;
    state.waiting = [];
    for (var i = 0; i < queued.length; i++) withEmail(queued[i]);
  }

  function compact(object) {
    var out = {};
    for (var key in object) {
      if (Object.prototype.hasOwnProperty.call(object, key) && object[key] !== undefined) {
        out[key] = object[key];
      }
    }
    return out;
  }

  var commands = {
    init: function (options) {
      options = options || {};
      state.key = options.client_key || options.key || null;
      state.endpoint = (options.endpoint || scriptEndpoint()).replace(/\/$/, "");
      state.email = options.email_id || state.email || remembered();
      if (options.email_id) remember(options.email_id);
      if (options.track_page !== false && root.document && root.location) {
        commands.page(root.document.title || root.location.pathname, {});
      }
      release();
    },
    identify: function (emailOrPayload, attributes) {
      var email = emailOrPayload;
      if (emailOrPayload && typeof emailOrPayload === "object") {
        email = (emailOrPayload.identifiers || {}).email_id || emailOrPayload.email;
        attributes = emailOrPayload.attributes;
      }
      if (!email) return;
      state.email = String(email);
      remember(state.email);
      post("/api/v2/identify", compact({ email: state.email, attributes: attributes }));
      release();
    },
    track: function (name, properties, eventdata) {
      withEmail(function (email) {
        return [
          "/api/v2/trackEvent",
          compact({ email: email, event: name, properties: properties, eventdata: eventdata }),
        ];
      });
    },
    page: function (name, properties) {
      var loc = root.location || {};
      var page = compact({
        ma_url: loc.href,
        ma_path: loc.pathname,
        ma_title: root.document ? root.document.title : undefined,
        ma_referrer: root.document ? root.document.referrer || undefined : undefined,
      });
      var merged = Object.assign(page, properties || {});
      withEmail(function (email) {
        return ["/api/v2/trackPage", compact({ email: email, page: name, properties: merged })];
      });
    },
    trackLink: function (link, properties) {
      withEmail(function (email) {
        return ["/api/v2/trackLink", compact({ email: email, link: link, properties: properties })];
      });
    },
  };

  function run(call) {
    if (!call || !call.length) return;
    var command = commands[call[0]];
    if (command) {
      command.apply(null, Array.prototype.slice.call(call, 1));
    } else if (root.console) {
      root.console.warn("tidings tracker: unknown command " + call[0]);
    }
  }

  var queue = root.Brevo || [];
  var api = {
    push: function () {
      for (var i = 0; i < arguments.length; i++) run(arguments[i]);
      return 0;
    },
    // Resolves once every request sent so far has been answered (tests, page unload hooks).
    flush: function () {
      return Promise.all(state.inflight.slice());
    },
  };
  root.Brevo = api;
  root.sendinblue = {
    track: commands.track,
    identify: commands.identify,
    page: commands.page,
    trackLink: commands.trackLink,
  };
  // Legacy snippet: `window.sib = {equeue: [...], client_key: "..."}`.
  if (root.sib && root.sib.client_key) {
    run(["init", { client_key: root.sib.client_key, email_id: root.sib.email_id }]);
    var legacy = root.sib.equeue || [];
    for (var j = 0; j < legacy.length; j++) {
      for (var name in legacy[j]) run([name].concat(legacy[j][name]));
    }
  }
  for (var k = 0; k < queue.length; k++) run(queue[k]);
})(typeof window !== "undefined" ? window : globalThis);
