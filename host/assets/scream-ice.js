// scream-ice.js: the browser side of the staged rollout (ES module, served
// by `scream-ice serve` at /scream-ice.js, no dependencies).
//
// The seed's FeatureFlags / ConnectionManager / LegacyDeprecation for
// ScreamRouter's web page:
// - ConnectionManager.iceConfig() fetches /api/ice-config with this
//   browser's stored client_id (a random 128-bit id kept in localStorage),
//   so the router buckets the browser, not its IP; the reply's `screamIce`
//   member says the arm, mode and stage.
// - ConnectionManager.connect() builds the RTCPeerConnection and trickles:
//   the offer's credentials go to the router at once (POST
//   /api/ice/sessions), each candidate follows by PATCH as the browser
//   gathers it, so the browser's own gathering is off the critical path.
// - Once connected (or failed), it reads getStats() for the selected pair
//   and posts the outcome (POST /api/ice/outcomes): success, time from
//   createOffer to connected, both candidate types, whether a STUN/TURN
//   server was needed.
// - In legacy mode, LegacyDeprecation shows the seed's notice (Enable /
//   Learn more / Later); "Enable" opts this browser into smart ICE.

const ID_KEY = "screamIce.clientId";
const OPT_IN_KEY = "screamIce.optIn";
const DISMISSED_KEY = "screamIce.deprecationDismissed";

function storage() {
  try { return window.localStorage; } catch (_) { return null; }
}

/** This browser's stable, random client id (stored on first use). */
export function clientId() {
  const s = storage();
  let id = s && s.getItem(ID_KEY);
  if (!id) {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    id = Array.from(b, x => x.toString(16).padStart(2, "0")).join("");
    if (s) s.setItem(ID_KEY, id);
  }
  return id;
}

/** The seed's FeatureFlags, answered from the router's `screamIce`. */
export class FeatureFlags {
  constructor(screamIce) { this.screamIce = screamIce || {}; }
  isSmartICEEnabled() { return this.screamIce.mode !== undefined && this.screamIce.mode !== "legacy"; }
  shouldPrioritizeLocal() { return this.isSmartICEEnabled(); }
  static optedIn() { const s = storage(); return !!(s && s.getItem(OPT_IN_KEY) === "1"); }
  static optIn() { const s = storage(); if (s) s.setItem(OPT_IN_KEY, "1"); }
}

/** The seed's LegacyDeprecation notice. */
export class LegacyDeprecation {
  /** Warn and show the notice when `screamIce` says legacy. `opts.parent`
   *  is where the notice goes (default: document.body); `opts.onEnable`
   *  runs after "Enable" (which opts this browser in). */
  static checkAndNotify(screamIce, opts = {}) {
    const d = screamIce && screamIce.deprecation;
    if (!d) return null;
    console.warn(d.warning);
    const s = storage();
    if (s && s.getItem(DISMISSED_KEY) === "1") return null;
    const box = document.createElement("div");
    box.className = "scream-ice-deprecation";
    box.setAttribute("role", "dialog");
    const title = document.createElement("strong");
    title.textContent = d.title;
    const msg = document.createElement("p");
    msg.textContent = d.message;
    box.append(title, msg);
    const button = (label, action) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.addEventListener("click", action);
      box.append(b);
      return b;
    };
    button("Enable", () => { FeatureFlags.optIn(); box.remove(); if (opts.onEnable) opts.onEnable(); });
    button("Learn More", () => { window.open(d.docs, "_blank", "noopener"); });
    button("Later", () => { if (s) s.setItem(DISMISSED_KEY, "1"); box.remove(); });
    (opts.parent || document.body).append(box);
    return box;
  }
}

function sdpLines(sdp, prefix) {
  return sdp.split(/\r?\n/).filter(l => l.startsWith(prefix)).map(l => l.slice(prefix.length));
}

/** The router's sdpfrag as the browser's SDP answer (one data channel;
 *  DTLS is not used by the router, only ICE). */
function answerSdp(mid, frag) {
  const ufrag = sdpLines(frag, "a=ice-ufrag:")[0];
  const pwd = sdpLines(frag, "a=ice-pwd:")[0];
  const cands = sdpLines(frag, "a=candidate:");
  const fp = Array.from({length: 32}, (_, i) => ((i * 7) % 256).toString(16).toUpperCase().padStart(2, "0")).join(":");
  const lines = [
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE " + mid,
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0",
    "a=mid:" + mid, "a=ice-ufrag:" + ufrag, "a=ice-pwd:" + pwd,
    "a=fingerprint:sha-256 " + fp, "a=setup:active", "a=sctp-port:5000",
    ...cands.map(c => "a=candidate:" + c),
  ];
  if (frag.includes("a=end-of-candidates")) lines.push("a=end-of-candidates");
  return lines.join("\r\n") + "\r\n";
}

/** The seed's ConnectionManager. */
export class ConnectionManager {
  /** `base`: the router's URL prefix ("" for the page's own origin). */
  constructor({base = ""} = {}) {
    this.base = base;
    this.clientId = clientId();
  }

  /** The router's RTCConfiguration for this browser (with `screamIce`). */
  async iceConfig() {
    const q = "client_id=" + encodeURIComponent(this.clientId) + (FeatureFlags.optedIn() ? "&opt_in=1" : "");
    const r = await fetch(this.base + "/api/ice-config?" + q, {cache: "no-store"});
    if (!r.ok) throw new Error("ice-config: " + r.status);
    return r.json();
  }

  /** Connect one RTCPeerConnection to a router ICE session; resolves with
   *  the outcome it posted ({success, connect_ms, ...}). */
  async connect({timeoutMs = 10000, notify = true} = {}) {
    const config = await this.iceConfig();
    const flags = new FeatureFlags(config.screamIce);
    console.log(flags.isSmartICEEnabled() ? "[Migration] Using new smart ICE configuration"
                                          : "[Migration] Using legacy ICE configuration");
    if (notify) LegacyDeprecation.checkAndNotify(config.screamIce);
    const pc = new RTCPeerConnection({iceServers: config.iceServers, iceTransportPolicy: config.iceTransportPolicy});
    pc.createDataChannel("scream");
    const t0 = performance.now();
    let location = null;
    const pending = [];
    const patch = frag => fetch(location, {
      method: "PATCH",
      headers: {"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*"},
      body: frag,
    });
    pc.onicecandidate = e => {
      const line = e.candidate && e.candidate.candidate
        ? "a=" + e.candidate.candidate + "\r\n" : "a=end-of-candidates\r\n";
      if (location) patch(line); else pending.push(line);
    };
    const done = new Promise(resolve => {
      const timer = setTimeout(() => resolve("timeout"), timeoutMs);
      pc.oniceconnectionstatechange = () => {
        const s = pc.iceConnectionState;
        if (s === "connected" || s === "completed" || s === "failed") { clearTimeout(timer); resolve(s); }
      };
    });
    await pc.setLocalDescription(await pc.createOffer());
    const sdp = pc.localDescription.sdp;
    const mid = sdpLines(sdp, "a=mid:")[0] || "0";
    const frag = "a=ice-ufrag:" + sdpLines(sdp, "a=ice-ufrag:")[0] + "\r\n" +
                 "a=ice-pwd:" + sdpLines(sdp, "a=ice-pwd:")[0] + "\r\n";
    const r = await fetch(this.base + "/api/ice/sessions?client_id=" + encodeURIComponent(this.clientId), {
      method: "POST", headers: {"Content-Type": "application/trickle-ice-sdpfrag"}, body: frag,
    });
    if (!r.ok) throw new Error("session: " + r.status + " " + await r.text());
    location = new URL(r.headers.get("Location"), r.url).href;
    for (const line of pending.splice(0)) patch(line);
    await pc.setRemoteDescription({type: "answer", sdp: answerSdp(mid, await r.text())});
    const state = await done;
    const connectMs = Math.round(performance.now() - t0);
    const outcome = await this.report(pc, state, connectMs, config.screamIce);
    pc.close();
    fetch(location, {method: "DELETE"}).catch(() => {});
    return outcome;
  }

  /** Read the selected pair from getStats() and post the outcome. */
  async report(pc, state, connectMs, screamIce) {
    const success = state === "connected" || state === "completed";
    const o = {client_id: this.clientId, success};
    if (success) o.connect_ms = connectMs; else o.failure_reason = "ice_" + state;
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach(s => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) stats.forEach(s => { if (!pair && s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
    if (pair) {
      const l = stats.get(pair.localCandidateId), r = stats.get(pair.remoteCandidateId);
      if (l) o.local_candidate_type = l.candidateType;
      if (r) o.remote_candidate_type = r.candidateType;
      o.stun_used = [o.local_candidate_type, o.remote_candidate_type].some(t => t === "srflx" || t === "relay");
    }
    o.config_type = !screamIce ? "smart"
      : screamIce.arm === "opt_in" ? "opt-in"
      : screamIce.mode === "legacy" ? "legacy" : "smart";
    await fetch(this.base + "/api/ice/outcomes", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(o),
    });
    return o;
  }
}
