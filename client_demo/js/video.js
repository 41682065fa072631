// Playing a room's stream in a <video>, for the viewer page's stage and the host
// console's preview: which player plays it, its start, its failures, and its end.
//
// - A plain file (an MP4, a WebM) plays through `src`.
// - An HLS playlist (.m3u8) plays natively where the browser says it can
//   (Safari, iPhones, Chrome with its built-in HLS player), else through hls.js
//   (package.json; the server serves the installed copy at /static/vendor/),
//   imported only when a stream needs it, so pages without HLS never load it.
// - Without either (no MediaSource, or hls.js not installed on the server) the
//   stream is "unsupported": the page says so instead of showing a black box.
//
// The caller learns what happens through onState(state, message): "loading" (not
// playing yet: starting, reconnecting, or waiting for a tap where autoplay is
// refused), "playing", "ended" (the stream finished: a VOD playlist's
// #EXT-X-ENDLIST, the end of a file), "error" (given up) and "unsupported";
// `message` is a short sentence for people. The element's `data-player` says
// which player took the stream ("file", "native" or "hls.js"), for tests and
// for whoever debugs a page; nothing reads it back.
//
// Live streams have nothing to seek: native controls (and their seek bar) stay
// off; each page draws its own play, mute and full-screen buttons.

const HLS_TYPE = "application/vnd.apple.mpegurl";
const HLS_MODULE = "/static/vendor/hls.mjs";
// Loaded by URL from this server: the pages' CSP allows workers from 'self' only
// (no blob: workers), and transmuxing MPEG-TS on the page's thread would make a
// phone's page stutter.
const HLS_WORKER = "/static/vendor/hls.worker.js";
// hls.js retries each request by its own policy first; a fatal network error is
// one it gave up on. The page starts loading again this many times, waiting 1 s,
// 2 s, 4 s, 8 s (an encoder that restarts, a phone between networks) before
// saying the stream could not be played. A fragment buffered again resets it.
const NETWORK_RETRIES = 4;

/** Whether a URL names an HLS playlist (by its path's extension). */
export function isHlsUrl(url) {
  return /\.m3u8($|[?#])/i.test(url);
}

let hlsModule = null;

/** hls.js's Hls class, imported once per page (a failed import stays failed: the
 *  browser keeps a module that could not be fetched as failed anyway). */
function loadHls() {
  if (!hlsModule) hlsModule = import(HLS_MODULE).then((module) => module.default);
  return hlsModule;
}

/** Plays `url` in `video`; returns stop(), which ends the playback and lets go of
 *  everything it took (hls.js, the element's source, the listeners). */
export function playStream(video, url, { onState = () => {} } = {}) {
  let stopped = false;
  let hls = null;
  let retryTimer = 0;
  let networkRetries = 0;
  let mediaRecovered = false;
  const say = (state, message) => {
    if (!stopped) onState(state, message);
  };

  const listeners = {
    playing: () => say("playing", "The stream is playing."),
    ended: () => say("ended", "The stream has stopped."),
    // With hls.js the element's errors come through hls.js's own (recovered once).
    error: () => { if (!hls) say("error", "The video stream could not be played."); },
  };
  for (const [type, listener] of Object.entries(listeners)) video.addEventListener(type, listener);

  video.controls = false;
  video.removeAttribute("controls");
  video.loop = false; // a live stream that ends stays ended: its end is the host's
  say("loading", "Starting the stream…");

  const start = () => {
    const p = video.play();
    if (p && p.catch) {
      p.catch((err) => {
        // Autoplay refused: the page's play button starts it. (An AbortError means
        // the source changed or stop() came first; a bad source reports "error".)
        if (err && err.name === "NotAllowedError") say("loading", "Tap play to start the stream.");
      });
    }
  };

  const stop = () => {
    if (stopped) return;
    stopped = true;
    clearTimeout(retryTimer);
    for (const [type, listener] of Object.entries(listeners)) video.removeEventListener(type, listener);
    if (hls) {
      hls.destroy(); // detaches the MediaSource and stops every request and timer
      hls = null;
    }
    video.pause();
    video.removeAttribute("src");
    video.load(); // stops fetching the old stream, not only showing it
    delete video.dataset.player;
  };

  if (!isHlsUrl(url)) {
    video.dataset.player = "file";
    video.src = url;
    start();
    return stop;
  }
  if (video.canPlayType(HLS_TYPE)) {
    // The browser's own HLS: less battery, AirPlay, the lock screen's controls.
    video.dataset.player = "native";
    video.src = url;
    start();
    return stop;
  }

  const onFatal = (Hls, data) => {
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR && networkRetries < NETWORK_RETRIES) {
      networkRetries += 1;
      say("loading", "The stream was interrupted; reconnecting…");
      retryTimer = setTimeout(() => {
        retryTimer = 0;
        if (stopped || !hls) return;
        // No playlist yet: ask for it again; else go on from where loading stopped.
        if (hls.levels && hls.levels.length) hls.startLoad();
        else hls.loadSource(url);
      }, 1000 * 2 ** (networkRetries - 1));
      return;
    }
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !mediaRecovered) {
      // A decoder or buffer fault: hls.js rebuilds the MediaSource and goes on, once.
      mediaRecovered = true;
      hls.recoverMediaError();
      return;
    }
    say("error", "The video stream could not be played.");
    hls.destroy();
    hls = null;
  };

  loadHls().then((Hls) => {
    if (stopped) return;
    if (!Hls.isSupported()) {
      say("unsupported", "This stream uses HLS, which this browser cannot play.");
      return;
    }
    video.dataset.player = "hls.js";
    hls = new Hls({
      workerPath: HLS_WORKER,
      // A show runs for hours: keep 30 s behind the playhead in memory, not all of it.
      backBufferLength: 30,
      // No rendition larger than the video box (a 390 px phone needs no 1080p).
      capLevelToPlayerSize: true,
    });
    hls.on(Hls.Events.ERROR, (_event, data) => { if (data.fatal && hls) onFatal(Hls, data); });
    hls.on(Hls.Events.FRAG_BUFFERED, () => { networkRetries = 0; });
    hls.on(Hls.Events.MANIFEST_PARSED, start);
    hls.loadSource(url);
    hls.attachMedia(video);
  }, () => {
    say("unsupported", "This stream uses HLS, which this browser cannot play on its own, "
      + "and this server has no HLS player installed.");
  });
  return stop;
}
