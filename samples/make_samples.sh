#!/usr/bin/env bash
# Recipe for the bundled demo set in samples/ (committed, so `make run` needs neither espeak-ng nor sox).
# Re-run it to rebuild the set: `bash samples/make_samples.sh` (needs espeak-ng and sox from Debian).
# Synthetic speech in 5 languages (with a JSONL manifest of reference texts), plus noise, a tone,
# silence and one corrupt file: enough to exercise every stage and every quarantine path.
set -euo pipefail
cd "$(dirname "$0")"
out=audio
rm -rf "$out" manifest.jsonl
mkdir -p "$out/speech" "$out/other"

say() {  # say LANG VOICE FILE TEXT: 16 kHz mono speech, padded with 0.4 s of silence, in FILE's format
  local lang=$1 voice=$2 file=$3 text=$4 tmp
  tmp=$(mktemp --suffix=.wav)
  espeak-ng -v "$voice" -s 150 -w "$tmp" "$text"
  sox "$tmp" -r 16000 -c 1 "$out/speech/$file" pad 0.4 0.4
  rm -f "$tmp"
  printf '{"path": "audio/speech/%s", "text": "%s", "language": "%s", "speaker": "espeak-%s"}\n' \
    "$file" "$text" "$lang" "$voice" >> manifest.jsonl
}

say en en-us en_weather.wav "The weather today is sunny with a light breeze from the west."
say en en-gb en_library.flac "Please return the books to the library before the end of the month."
say de de de_bahnhof.flac "Der Zug nach Berlin fährt heute um acht Uhr vom Hauptbahnhof ab."
say fr fr-fr fr_marche.ogg "Le marché du samedi matin vend des fruits frais et du pain chaud."
say es es es_ciudad.mp3 "La ciudad tiene un parque grande con muchos árboles y una fuente."
say it it it_cucina.wav "La cucina italiana usa olio di oliva, pomodori freschi e basilico."

# Not speech: each should end in quarantine, with the check that caught it.
sox -n -r 16000 -c 1 "$out/other/pink_noise.wav" synth 4 pinknoise vol 0.3
sox -n -r 16000 -c 1 "$out/other/tone_440hz.flac" synth 3 sine 440 vol 0.5
sox -n -r 16000 -c 1 "$out/other/silence.wav" trim 0 3
# A corrupt file: a WAV header that promises far more audio than follows it.
head -c 20000 "$out/speech/en_weather.wav" > "$out/other/corrupt_cut.wav"
printf 'this is not audio\n' > "$out/other/notes_not_audio.mp3"
du -sh "$out"
