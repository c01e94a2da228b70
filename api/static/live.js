/* The page's Live mode: the microphone, streamed to /v1/realtime as OpenAI's realtime
 * transcription protocol has it (24 kHz 16-bit PCM in base64 appends, server_vad turns).
 * The text of the turn in progress grows from the deltas; a completed turn takes its place. */
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const startButton = $('live-start');
  const stopButton = $('live-stop');
  const statusLine = $('live-status');
  const turnList = $('live-turns');
  const partialLine = $('live-partial');
  const card = $('live');
  const RATE = 24000;
  let session = null;

  function say(text, state) {
    statusLine.textContent = text;
    card.dataset.state = state || '';
  }

  function clock(ms) {
    const s = Math.max(0, ms) / 1000;
    return `${String(Math.floor(s / 60)).padStart(2, '0')}:${(s % 60).toFixed(1).padStart(4, '0')}`;
  }

  function socketUrl() {
    const url = new URL('/v1/realtime', window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = 'intent=transcription';
    return url.toString();
  }

  /** Float samples to base64 of 16-bit little-endian PCM. */
  function encode(samples) {
    const bytes = new Uint8Array(samples.length * 2);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < samples.length; i += 1) {
      const v = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(i * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
    }
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }

  function turnItem(id) {
    let li = turnList.querySelector(`li[data-item="${CSS.escape(id)}"]`);
    if (!li) {
      li = document.createElement('li');
      li.dataset.item = id;
      const time = document.createElement('span');
      time.className = 'times';
      const text = document.createElement('span');
      text.className = 'segment-text';
      li.append(time, text);
      turnList.append(li);
    }
    return li;
  }

  function onEvent(s, event) {
    switch (event.type) {
      case 'session.created':
        s.ws.send(JSON.stringify({ type: 'session.update', session: {
          type: 'transcription',
          audio: { input: {
            format: { type: 'audio/pcm', rate: RATE },
            transcription: s.transcription,
            turn_detection: { type: 'server_vad' },
          } },
        } }));
        break;
      case 'session.updated':
        say('Listening…', 'listening');
        s.ready = true;
        break;
      case 'input_audio_buffer.speech_started':
        s.starts[event.item_id] = event.audio_start_ms;
        s.partial[event.item_id] = '';
        say('Hearing speech…', 'listening');
        break;
      case 'conversation.item.input_audio_transcription.delta':
        s.partial[event.item_id] = (s.partial[event.item_id] || '') + (event.delta || '');
        partialLine.textContent = s.partial[event.item_id];
        break;
      case 'conversation.item.input_audio_transcription.completed': {
        delete s.partial[event.item_id];
        partialLine.textContent = '';
        const text = (event.transcript || '').trim();
        if (text) {
          const li = turnItem(event.item_id);
          li.querySelector('.times').textContent = clock(s.starts[event.item_id] || 0);
          li.querySelector('.segment-text').textContent = text;
          li.scrollIntoView({ block: 'nearest' });
        }
        say('Listening…', 'listening');
        break;
      }
      case 'error':
        say(`${event.error && event.error.message ? event.error.message : 'The service reported an error.'}`,
          'error');
        break;
      case 'session.closed':
        say('Stopped.', '');
        break;
      default:
        break;
    }
  }

  async function start() {
    if (session) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say('This browser offers no microphone here (a page served over plain http from another host may not use one).',
        'error');
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
    } catch (err) {
      say(`The microphone could not be opened: ${err.message || err.name}`, 'error');
      return;
    }
    const key = ($('api-key') && $('api-key').value.trim()) || '';
    const protocols = ['realtime'];
    if (key) protocols.push(`openai-insecure-api-key.${key}`);
    const transcription = {};
    const model = $('model') && $('model').value.trim();
    const language = $('language') && $('language').value;
    if (model) transcription.model = model;
    if (language) transcription.language = language;
    const context = new AudioContext({ sampleRate: RATE });
    const source = context.createMediaStreamSource(stream);
    // A ScriptProcessor keeps this one file, with no worklet module to load.
    const processor = context.createScriptProcessor(4096, 1, 1);
    const s = { ws: new WebSocket(socketUrl(), protocols), stream, context, source, processor,
      transcription, starts: {}, partial: {}, ready: false };
    session = s;
    turnList.replaceChildren();
    partialLine.textContent = '';
    say('Connecting…', '');
    startButton.hidden = true;
    stopButton.hidden = false;
    processor.onaudioprocess = (ev) => {
      if (s.ready && s.ws.readyState === WebSocket.OPEN) {
        s.ws.send(JSON.stringify({ type: 'input_audio_buffer.append',
          audio: encode(ev.inputBuffer.getChannelData(0)) }));
      }
    };
    source.connect(processor);
    processor.connect(context.destination);
    s.ws.onmessage = (msg) => {
      try {
        onEvent(s, JSON.parse(msg.data));
      } catch (err) {
        say(`An event could not be read: ${err.message}`, 'error');
      }
    };
    s.ws.onclose = (ev) => {
      if (session === s) {
        if (card.dataset.state !== 'error') {
          say(ev.code === 1000 || ev.code === 1005 ? 'Stopped.' : `The connection closed (${ev.code}).`,
            ev.code === 1000 || ev.code === 1005 ? '' : 'error');
        }
        release(s);
      }
    };
    s.ws.onerror = () => say('The live connection failed.', 'error');
  }

  function release(s) {
    s.processor.disconnect();
    s.source.disconnect();
    s.stream.getTracks().forEach((track) => track.stop());
    s.context.close();
    if (session === s) session = null;
    startButton.hidden = false;
    stopButton.hidden = true;
  }

  function stop() {
    const s = session;
    if (!s) return;
    s.ready = false;
    if (s.ws.readyState === WebSocket.OPEN) {
      say('Finishing the last turn…', '');
      s.ws.send(JSON.stringify({ type: 'session.close' }));
    } else {
      release(s);
    }
  }

  startButton.addEventListener('click', start);
  stopButton.addEventListener('click', stop);
})();
