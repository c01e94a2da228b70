/* The upload page: plain JavaScript, talking to the public API like any other client.
 *
 * Upload: XMLHttpRequest (for upload progress) to POST /api/transcribe/async.
 * Progress: the job's Server-Sent Events, read with fetch() so that the Authorization header
 * can be sent (EventSource cannot); polling the status URL when the stream fails.
 * Result: GET .../result?format=json, downloads in txt, srt, vtt and json.
 */
'use strict';

(() => {
  const API = '/api/transcribe/async';
  const KEY_STORAGE = 'whisper-pipeline.api-key';
  const TIMES_STORAGE = 'whisper-pipeline.show-times';
  const FINAL = new Set(['completed', 'failed', 'cancelled']);
  const STAGES = {
    uploading: 'Uploading',
    queued: 'Waiting in the queue',
    extracting: 'Reading the audio',
    'cache-lookup': 'Looking for an earlier transcript',
    'waiting-for-transcriber': 'Waiting for a transcriber',
    transcribing: 'Transcribing',
    transcribe: 'Transcribing',
    diarize: 'Finding the speakers',
    'transcribe+diarize': 'Transcribing and finding the speakers',
    completed: 'Done',
    failed: 'Failed',
    cancelled: 'Cancelled',
  };
  const FIELDS = ['file', 'engine', 'model', 'language', 'task', 'word_timestamps', 'diarize', 'multichannel',
    'hotwords', 'redact_pii', 'redact_pii_policies', 'redact_pii_sub', 'redact_pii_audio'];

  const $ = (id) => document.getElementById(id);
  const form = $('upload-form');
  const fileInput = $('file');
  const dropzone = $('dropzone');
  const keyInput = $('api-key');
  const errorBox = $('error');
  const jobPanel = $('job');
  const statusLine = $('status');
  const cancelButton = $('cancel');
  const segmentList = $('segments');
  const maxBytes = Number(form.dataset.maxUploadBytes) || 0;
  const baseTitle = document.title;

  /** The job on screen; a new one replaces it (the old one goes on in the service). */
  let job = null;

  // ---------------------------------------------------------------- requests and errors

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field || null;
    }
  }

  function apiKey() {
    return keyInput.value.trim();
  }

  function withKey(headers) {
    const out = new Headers(headers || {});
    const key = apiKey();
    if (key) out.set('Authorization', `Bearer ${key}`);
    return out;
  }

  function errorFromBody(status, statusText, body) {
    const err = body && typeof body === 'object' ? body.error : null;
    if (err && err.message) return new ApiError(status, err.code || '', err.message, err.field);
    if (status === 0) {
      return new ApiError(0, 'network', 'Could not reach the service. Check the connection and try again.');
    }
    return new ApiError(status, 'http', `The service answered ${status}${statusText ? ` ${statusText}` : ''}.`);
  }

  /** fetch() with the API key; any answer but 2xx becomes an ApiError with the API's message. */
  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: withKey(options.headers), cache: 'no-store' });
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      throw errorFromBody(0, '', null);
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        // not JSON: a proxy's page, say
      }
      throw errorFromBody(response.status, response.statusText, body);
    }
    return response;
  }

  function clearError() {
    errorBox.replaceChildren();
    for (const name of FIELDS) {
      const el = $(name);
      if (el) el.removeAttribute('aria-invalid');
    }
    dropzone.classList.remove('invalid');
  }

  /** Show what went wrong in plain words: a headline, the API's message, and where to look. */
  function showError(headline, err) {
    errorBox.replaceChildren();
    const strong = document.createElement('strong');
    strong.textContent = headline;
    errorBox.append(strong);
    if (err && err.message) errorBox.append(' ', err.message);
    const field = err && err.field;
    if (field && FIELDS.includes(field)) {
      const el = $(field);
      el.setAttribute('aria-invalid', 'true');
      if (field === 'file') dropzone.classList.add('invalid');
    }
    if (err && (err.status === 401 || err.status === 403)) {
      $('key-details').open = true;
      keyInput.focus();
    }
  }

  // ---------------------------------------------------------------- formatting

  function clock(seconds) {
    const total = Math.max(0, Math.round(Number(seconds) || 0));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, '0');
    return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
  }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} kB`;
    if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
    return `${(n / 1024 ** 3).toFixed(2)} GB`;
  }

  function percent(fraction) {
    return `${Math.floor(Math.min(1, Math.max(0, fraction)) * 100)}%`;
  }

  function languageName(code) {
    if (!code) return '';
    const option = [...$('language').options].find((o) => o.value === code);
    return option ? option.textContent.replace(/\s*\([^)]*\)$/, '') : code;
  }

  function stem(filename) {
    const name = (filename || '').split(/[\\/]/).pop();
    return name.replace(/\.[^.]+$/, '') || 'transcript';
  }

  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  // ---------------------------------------------------------------- the job panel

  function newJob(fields) {
    if (job) {
      if (job.xhr && !job.id) job.xhr.abort();
      job.controller.abort();
    }
    job = {
      id: null,
      filename: '',
      status: 'uploading',
      stage: 'uploading',
      progress: 0,
      queuePosition: null,
      segments: new Map(),
      final: false,
      resultShown: false,
      text: '',
      controller: new AbortController(),
      xhr: null,
      ...fields,
    };
    jobPanel.hidden = false;
    $('job-title').textContent = job.filename || (job.id ? `Job ${job.id}` : 'Job');
    $('job-meta').textContent = '';
    $('result-tools').hidden = true;
    $('empty-transcript').hidden = true;
    segmentList.replaceChildren();
    cancelButton.hidden = false;
    cancelButton.disabled = false;
    setUpload(job.id ? null : 0);
    render(job);
    return job;
  }

  function setUpload(fraction) {
    const meter = $('upload-meter');
    meter.hidden = fraction === null;
    if (fraction === null) return;
    $('upload-progress').value = Math.round(fraction * 100);
    $('upload-pct').textContent = percent(fraction);
  }

  /** The status line changes only when its words do, so screen readers are not flooded. */
  function say(text) {
    if (statusLine.textContent !== text) statusLine.textContent = text;
  }

  function render(j) {
    if (j !== job) return;
    const words = STAGES[j.stage] || STAGES[j.status] || j.stage || j.status;
    let line = words;
    if (j.status === 'uploading') line = `Uploading ${j.filename}…`;
    else if (j.status === 'queued' && j.queuePosition) line = `${words} (position ${j.queuePosition})…`;
    else if (!FINAL.has(j.status)) line = `${words}…`;
    else if (j.status === 'completed' && j.cached && j.resultShown) line = 'Done: this recording was transcribed before, so the result came from the cache.';
    else if (j.status === 'completed' && !j.resultShown) line = 'Done; loading the transcript…';
    else if (j.status === 'completed') line = 'Done.';
    else if (j.status === 'cancelled') line = 'Cancelled.';
    else if (j.status === 'failed') line = 'The transcription failed.';
    say(line);

    const bar = $('job-progress');
    const pct = $('job-pct');
    $('job-meter').hidden = !j.id;
    if (j.status === 'completed') {
      bar.value = 100;
      pct.textContent = '100%';
    } else if (j.status === 'transcribing' || (FINAL.has(j.status) && j.progress > 0)) {
      bar.value = Math.round(j.progress * 100);
      pct.textContent = percent(j.progress);
    } else if (FINAL.has(j.status)) {
      bar.value = 0;
      pct.textContent = '';
    } else {
      bar.removeAttribute('value'); // indeterminate while queued or reading the audio
      pct.textContent = '';
    }
    jobPanel.dataset.status = j.status;
    document.title = FINAL.has(j.status) ? `${words} · ${baseTitle}`
      : `${j.status === 'transcribing' ? `${percent(j.progress)} ` : ''}${words} · ${baseTitle}`;
  }

  function applyStatus(j, body) {
    if (j !== job || j.final) return;
    if (body.status) j.status = body.status;
    // Status events from state changes carry no stage: the state is the stage then.
    j.stage = body.stage && body.stage !== 'done' ? body.stage : j.status;
    if (typeof body.progress === 'number') j.progress = body.progress;
    if (typeof body.cached === 'boolean') j.cached = body.cached;
    j.queuePosition = body.queue_position || null;
    if (body.filename && !j.filename) {
      j.filename = body.filename;
      $('job-title').textContent = j.filename;
    }
    render(j);
  }

  function segmentItem(segment) {
    const li = document.createElement('li');
    li.dataset.id = segment.id;
    const times = document.createElement('span');
    times.className = 'times';
    const start = document.createElement('time');
    start.textContent = clock(segment.start);
    const end = document.createElement('time');
    end.textContent = clock(segment.end);
    times.append(start, '–', end);
    const text = document.createElement('span');
    text.className = 'segment-text';
    if (segment.speaker) {
      const who = document.createElement('span');
      who.className = 'speaker';
      who.textContent = segment.speaker;
      li.dataset.speaker = segment.speaker;
      text.append(who, ' ');
    } else if (segment.channel) {
      const which = document.createElement('span');
      which.className = 'channel';
      which.textContent = `Channel ${segment.channel}`;
      li.dataset.channel = segment.channel;
      text.append(which, ' ');
    }
    text.append(segment.text.trim());
    li.append(times, ' ', text);
    return li;
  }

  function addSegment(j, segment, progress) {
    if (j !== job || !segment || j.segments.has(segment.id)) return;
    if (typeof progress === 'number' && !j.final) {
      j.progress = Math.max(j.progress, progress);
      render(j);
    }
    j.segments.set(segment.id, segment);
    const atBottom = segmentList.scrollHeight - segmentList.scrollTop - segmentList.clientHeight < 40;
    const item = segmentItem(segment);
    const later = [...segmentList.children].find((li) => Number(li.dataset.id) > segment.id);
    segmentList.insertBefore(item, later || null);
    if (atBottom && !j.final) segmentList.scrollTop = segmentList.scrollHeight;
  }

  function showSegments(j, segments) {
    j.segments = new Map();
    segmentList.replaceChildren();
    for (const segment of segments) addSegment(j, segment);
    segmentList.scrollTop = 0;
    $('empty-transcript').hidden = segments.some((s) => s.text.trim()) || j.status !== 'completed';
  }

  // ---------------------------------------------------------------- upload

  function fileChosen() {
    const file = fileInput.files[0];
    clearError();
    $('file-name').textContent = file ? `${file.name} · ${bytes(file.size)}` : '';
    dropzone.classList.toggle('has-file', Boolean(file));
  }

  function start() {
    clearError();
    const file = fileInput.files[0];
    if (!file) {
      showError('Choose a recording first.', { field: 'file' });
      fileInput.focus();
      return;
    }
    if (file.size === 0) {
      showError('This file is empty.', { field: 'file' });
      return;
    }
    if (maxBytes && file.size > maxBytes) {
      showError('This file is too large.', {
        message: `It is ${bytes(file.size)}; this service accepts up to ${form.dataset.maxUpload}.`,
        field: 'file',
      });
      return;
    }
    const data = new FormData();
    data.append('file', file, file.name);
    data.append('engine', $('engine').value);
    const model = $('model').value.trim();
    if (model) data.append('model', model);
    if ($('language').value) data.append('language', $('language').value);
    data.append('task', $('task').value);
    if ($('word_timestamps').checked) data.append('word_timestamps', 'true');
    if ($('diarize').checked) data.append('diarize', 'true');
    if ($('multichannel').checked) data.append('multichannel', 'true');
    const hotwords = $('hotwords').value.trim();
    if (hotwords) data.append('hotwords', hotwords);
    if ($('redact_pii').checked) {
      data.append('redact_pii', 'true');
      const policies = [...document.querySelectorAll('input[name="redact_pii_policies"]:checked')]
        .map((box) => box.value);
      if (policies.length) data.append('redact_pii_policies', policies.join(','));
      data.append('redact_pii_sub', $('redact_pii_sub').value);
      if ($('redact_pii_audio').checked) data.append('redact_pii_audio', 'true');
    }

    const j = newJob({ filename: file.name });
    const xhr = new XMLHttpRequest();
    j.xhr = xhr;
    xhr.open('POST', API);
    xhr.setRequestHeader('Accept', 'application/json');
    const key = apiKey();
    if (key) xhr.setRequestHeader('Authorization', `Bearer ${key}`);
    xhr.upload.addEventListener('progress', (ev) => {
      if (j === job && ev.lengthComputable) setUpload(ev.loaded / ev.total);
    });
    xhr.upload.addEventListener('load', () => {
      if (j !== job) return;
      setUpload(1);
      say('Uploaded; checking the file…');
    });
    xhr.addEventListener('load', () => {
      if (j !== job) return;
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {
        // handled below
      }
      if (xhr.status === 202 && body && body.task_id) {
        accepted(j, body);
      } else {
        const err = errorFromBody(xhr.status, xhr.statusText, body);
        fail(j, refusal(err), err);
      }
    });
    xhr.addEventListener('error', () => {
      fail(j, 'The upload failed.', new ApiError(0, 'network',
        'The connection broke off. The service may have refused the file (it accepts up to '
        + `${form.dataset.maxUpload}), or it could not be reached.`));
    });
    xhr.addEventListener('abort', () => {
      if (j === job) finish(j, { status: 'cancelled' }, 'Upload cancelled.');
    });
    xhr.send(data);
  }

  function refusal(err) {
    if (err.status === 401 || err.status === 403) return 'The API key was not accepted.';
    if (err.status === 429) return 'Too many requests: wait a little and try again.';
    if (err.field && err.field !== 'file') return 'Please check the options.';
    if (err.status >= 500) return 'The service could not take the file right now.';
    return 'The service did not accept the file.';
  }

  function accepted(j, body) {
    j.id = body.task_id;
    j.xhr = null;
    history.replaceState(null, '', `#job=${encodeURIComponent(j.id)}`);
    applyStatus(j, body);
    if (FINAL.has(body.status)) {
      finish(j, body);
    } else {
      follow(j);
    }
    refreshRecent();
  }

  // ---------------------------------------------------------------- following a job

  async function follow(j) {
    try {
      const summary = await streamEvents(j);
      if (summary) {
        finish(j, summary);
        return;
      }
    } catch (err) {
      if (j !== job || j.final || err.name === 'AbortError') return;
      if (err instanceof ApiError && (err.status === 404 || err.status === 401 || err.status === 403)) {
        fail(j, 'The job could not be followed.', err);
        return;
      }
    }
    // The stream broke off or is not available: ask for the status instead.
    poll(j);
  }

  /** Read the job's event stream; resolve with the summary of its `end` event, or null if the
   * stream stopped before one. */
  async function streamEvents(j) {
    const response = await api(`${API}/${encodeURIComponent(j.id)}/events`, {
      headers: { Accept: 'text/event-stream' },
      signal: j.controller.signal,
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let name = '';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return null;
      buffer += decoder.decode(value, { stream: true });
      for (;;) {
        const match = /\r\n|\r|\n/.exec(buffer);
        // A lone \r at the end may be the first half of \r\n: wait for the rest.
        if (!match || (match[0] === '\r' && match.index === buffer.length - 1)) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === '') {
          if (data.length) {
            const summary = dispatch(j, name || 'message', data.join('\n'));
            if (summary) {
              reader.cancel().catch(() => {});
              return summary;
            }
          }
          name = '';
          data = [];
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'event') name = val;
          else if (field === 'data') data.push(val);
        }
      }
    }
  }

  /** Act on one event; return the summary when it is the last one. */
  function dispatch(j, name, raw) {
    let payload;
    try {
      payload = JSON.parse(raw);
    } catch (_) {
      return null;
    }
    if (name === 'status') applyStatus(j, payload);
    else if (name === 'segment') addSegment(j, payload.segment, payload.progress);
    else if (name === 'progress' && !j.final && typeof payload.progress === 'number') {
      // Diarization reports progress without segments.
      j.progress = Math.max(j.progress, payload.progress);
      render(j);
    }
    else if (name === 'end') return payload;
    return null;
  }

  async function poll(j) {
    let failures = 0;
    while (j === job && !j.final) {
      try {
        const response = await api(`${API}/status/${encodeURIComponent(j.id)}`, { signal: j.controller.signal });
        const body = await response.json();
        failures = 0;
        applyStatus(j, body);
        for (const segment of body.segments || []) addSegment(j, segment);
        if (FINAL.has(body.status)) {
          finish(j, body);
          return;
        }
      } catch (err) {
        if (err.name === 'AbortError' || j !== job) return;
        if (err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
          fail(j, 'The job could not be followed.', err);
          return;
        }
        failures += 1;
        say('Lost contact with the service; trying again…');
      }
      await sleep(Math.min(1000 * 2 ** failures, 10000));
    }
  }

  /** A job reached a final state (or the page gave up on it). */
  async function finish(j, summary, words) {
    if (j !== job || j.final) return;
    j.status = summary.status;
    j.stage = summary.status;
    if (typeof summary.cached === 'boolean') j.cached = summary.cached;
    j.final = true;
    j.controller.abort();
    cancelButton.hidden = true;
    render(j);
    if (words) say(words);
    refreshRecent();
    if (summary.status === 'completed') {
      await showResult(j, summary);
    } else {
      if (j.segments.size) {
        const n = j.segments.size;
        $('job-meta').textContent = `${n} ${n === 1 ? 'segment was' : 'segments were'} decoded before the job stopped:`;
      }
      if (summary.status === 'failed') {
        const error = summary.error || {};
        showError('The transcription failed.', { message: error.message || 'No reason was given.' });
      }
    }
  }

  /** The page could not start or follow the job: say why, and stop. */
  function fail(j, headline, err) {
    if (j !== job) return;
    showError(headline, err);
    j.final = true;
    j.controller.abort();
    cancelButton.hidden = true;
    if (!j.id) {
      // Refused at upload: no job exists, the message under the form says it all.
      job = null;
      jobPanel.hidden = true;
      document.title = baseTitle;
      return;
    }
    say(headline);
    $('job-meter').hidden = true;
  }

  async function showResult(j, summary) {
    let result = summary.result;
    if (!result) {
      try {
        const response = await api(`${API}/${encodeURIComponent(j.id)}/result?format=json`);
        result = await response.json();
      } catch (err) {
        if (j !== job) return;
        showError('The transcript could not be loaded.', err);
        say('Done, but the transcript could not be loaded.');
        return;
      }
    }
    if (j !== job) return;
    j.text = (result.text || '').trim();
    showSegments(j, result.segments || []);
    const facts = [];
    const language = result.language || summary.language;
    if (language) facts.push(languageName(language));
    const duration = result.duration ?? summary.duration;
    if (duration) facts.push(`${clock(duration)} of audio`);
    if (summary.engine) facts.push(`${summary.engine} ${summary.model || ''}`.trim());
    if (summary.created_at && summary.finished_at && !j.cached) {
      const took = (Date.parse(summary.finished_at) - Date.parse(summary.created_at)) / 1000;
      if (took >= 0) facts.push(`took ${took < 60 ? `${took.toFixed(1)} s` : clock(took)}`);
    }
    const speakers = result.speakers || [];
    if (speakers.length) {
      facts.push(`${speakers.length} ${speakers.length === 1 ? 'speaker' : 'speakers'} (${
        speakers.map((s) => `${s.id} ${clock(s.talk_time)}`).join(', ')})`);
    }
    const channels = result.channels || [];
    if (channels.length) facts.push(`${channels.length} ${channels.length === 1 ? 'channel' : 'channels'}`);
    const redactions = result.redactions || [];
    if (redactions.length) facts.push(`${redactions.length} redacted`);
    if (j.cached) facts.push('from the cache');
    for (const warning of summary.warnings || []) facts.push(warning);
    $('job-meta').textContent = facts.join(' · ');
    $('dl-rttm').hidden = !speakers.length;
    const redactedAudio = $('dl-redacted-audio');
    redactedAudio.hidden = !summary.redacted_audio_url;
    if (summary.redacted_audio_url) {
      redactedAudio.href = summary.redacted_audio_url;
      redactedAudio.download = `${stem(j.filename)}.redacted.wav`;
    }
    for (const link of document.querySelectorAll('.downloads a[data-format]')) {
      link.href = `${API}/${encodeURIComponent(j.id)}/result?format=${link.dataset.format}`;
      link.download = `${stem(j.filename)}.${link.dataset.ext}`;
    }
    $('result-tools').hidden = false;
    j.resultShown = true;
    render(j);
  }

  /** Open a job by id (from the address or the recent list): show where it stands, follow it. */
  async function openJob(id) {
    if (job && job.id === id) return;
    clearError();
    const j = newJob({ id, status: 'queued', stage: 'queued' });
    say('Loading the job…');
    try {
      const response = await api(`${API}/status/${encodeURIComponent(id)}`, { signal: j.controller.signal });
      const body = await response.json();
      applyStatus(j, body);
      for (const segment of body.segments || []) addSegment(j, segment);
      if (FINAL.has(body.status)) finish(j, body);
      else follow(j);
    } catch (err) {
      if (err.name !== 'AbortError') fail(j, 'The job could not be opened.', err);
    }
  }

  async function cancel() {
    const j = job;
    if (!j || j.final) return;
    if (!j.id) {
      if (j.xhr) j.xhr.abort();
      return;
    }
    cancelButton.disabled = true;
    say('Cancelling…');
    try {
      const response = await api(`${API}/${encodeURIComponent(j.id)}`, { method: 'DELETE' });
      const body = await response.json().catch(() => ({}));
      finish(j, { status: body.status || 'cancelled' });
    } catch (err) {
      if (j !== job) return;
      cancelButton.disabled = false;
      render(j);
      // 409: it finished meanwhile; the stream brings the final state.
      showError(err.status === 409 ? 'Too late to cancel.' : 'The job could not be cancelled.', err);
    }
  }

  // ---------------------------------------------------------------- downloads and copying

  async function download(link) {
    try {
      const response = await api(link.href);
      const url = URL.createObjectURL(await response.blob());
      const a = document.createElement('a');
      a.href = url;
      a.download = link.download;
      a.hidden = true;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    } catch (err) {
      showError('The download failed.', err);
    }
  }

  async function copyText() {
    const button = $('copy');
    const text = job ? job.text : '';
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      // Not a secure context (plain http to another host): the old way.
      const area = document.createElement('textarea');
      area.value = text;
      area.setAttribute('readonly', '');
      area.className = 'visually-hidden';
      document.body.append(area);
      area.select();
      document.execCommand('copy');
      area.remove();
    }
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy text'; }, 2000);
  }

  // ---------------------------------------------------------------- recent jobs

  async function refreshRecent() {
    const list = $('recent-list');
    const empty = $('recent-empty');
    let body;
    try {
      body = await (await api(`${API}?limit=10`)).json();
    } catch (err) {
      list.replaceChildren();
      empty.hidden = false;
      empty.textContent = err.status === 401 || err.status === 403
        ? 'Enter your API key to see your jobs.' : `The job list could not be loaded: ${err.message}`;
      return;
    }
    const items = (body.jobs || []).map((entry) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = `#job=${encodeURIComponent(entry.task_id)}`;
      a.textContent = entry.filename || entry.task_id;
      const badge = document.createElement('span');
      badge.className = `badge badge-${entry.status}`;
      badge.textContent = entry.status;
      const when = document.createElement('time');
      when.dateTime = entry.created_at || '';
      when.textContent = entry.created_at ? new Date(entry.created_at).toLocaleString() : '';
      const facts = document.createElement('span');
      facts.className = 'meta';
      facts.append(when);
      if (entry.duration) facts.append(` · ${clock(entry.duration)}`);
      li.append(a, ' ', badge, ' ', facts);
      return li;
    });
    list.replaceChildren(...items);
    empty.textContent = 'No jobs yet.';
    empty.hidden = items.length > 0;
  }

  function jobFromAddress() {
    const match = /^#job=([^&]+)$/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  // ---------------------------------------------------------------- wiring

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    start();
  });
  fileInput.addEventListener('change', fileChosen);
  cancelButton.addEventListener('click', cancel);
  $('copy').addEventListener('click', copyText);
  $('refresh-recent').addEventListener('click', refreshRecent);
  for (const id of FIELDS.slice(1)) $(id).addEventListener('change', () => $(id).removeAttribute('aria-invalid'));

  document.querySelector('.downloads').addEventListener('click', (ev) => {
    const link = ev.target.closest('a[data-format]');
    if (!link || !link.href) return;
    // Fetched here so that the API key goes along and the file is named after the recording;
    // without a key, a modified click (new tab, save link) is left to the browser.
    if (!apiKey() && (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey || ev.button !== 0)) return;
    ev.preventDefault();
    download(link);
  });

  const showTimes = $('show-times');
  showTimes.checked = localStorage.getItem(TIMES_STORAGE) !== 'no';
  const applyTimes = () => segmentList.classList.toggle('no-times', !showTimes.checked);
  showTimes.addEventListener('change', () => {
    localStorage.setItem(TIMES_STORAGE, showTimes.checked ? 'yes' : 'no');
    applyTimes();
  });
  applyTimes();

  keyInput.value = localStorage.getItem(KEY_STORAGE) || '';
  if (keyInput.value) $('key-details').open = true;
  keyInput.addEventListener('change', () => {
    if (apiKey()) localStorage.setItem(KEY_STORAGE, apiKey());
    else localStorage.removeItem(KEY_STORAGE);
    refreshRecent();
  });
  $('forget-key').addEventListener('click', () => {
    keyInput.value = '';
    localStorage.removeItem(KEY_STORAGE);
    keyInput.focus();
    refreshRecent();
  });

  // Drop a file on the box, or anywhere on the page; never let the browser navigate to it.
  let dragDepth = 0;
  window.addEventListener('dragenter', (ev) => {
    if (!ev.dataTransfer || ![...ev.dataTransfer.types].includes('Files')) return;
    dragDepth += 1;
    dropzone.classList.add('dragging');
  });
  window.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropzone.classList.remove('dragging');
  });
  window.addEventListener('dragover', (ev) => ev.preventDefault());
  window.addEventListener('drop', (ev) => {
    ev.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove('dragging');
    const files = ev.dataTransfer ? ev.dataTransfer.files : null;
    if (!files || !files.length) return;
    const chosen = new DataTransfer();
    chosen.items.add(files[0]);
    fileInput.files = chosen.files;
    fileChosen();
    if (files.length > 1) showError('One file at a time:', { message: `only ${files[0].name} was taken.` });
  });

  window.addEventListener('hashchange', () => {
    const id = jobFromAddress();
    if (id) openJob(id);
  });

  const initial = jobFromAddress();
  if (initial) openJob(initial);
  refreshRecent();
})();
