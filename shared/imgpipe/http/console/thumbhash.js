// ThumbHash decoder: turns the few bytes that imgcore's encoder writes (Evan Wallace's
// ThumbHash format) back into a small RGBA picture, shown while a thumbnail loads.
//
// Written for imgpipe from the format's description, as the inverse of
// imgcore/src/palette/thumb_hash.rs. The layout, little-endian:
//   bytes 0-2 (24 bits): L dc (6) | P dc (6) | Q dc (6) | L scale (5) | has alpha (1)
//   bytes 3-4 (16 bits): short side's L term count (3) | P scale (6) | Q scale (6) | landscape (1)
//   byte 5, with alpha only: A dc (4) | A scale (4)
//   then the AC terms of L, P, Q (and A) as 4-bit values, low nibble first.
// L is luminance, P yellow-blue, Q red-green, A alpha. Each channel keeps the DCT terms
// (cx, cy) of the triangle cx * ny < nx * (ny - cy), row by row, without the (0, 0) term.

const SIZE = 32; // longest side of the decoded picture, in pixels

/** The bytes of a base64 string. */
export function base64ToBytes(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/** The header fields of a hash, and how many terms each channel has. */
function readHeader(hash) {
  if (hash.length < 5) throw new Error("ThumbHash too short");
  const h24 = hash[0] | (hash[1] << 8) | (hash[2] << 16);
  const h16 = hash[3] | (hash[4] << 8);
  const hasAlpha = (h24 >> 23) & 1;
  const landscape = (h16 >> 15) & 1;
  // The encoder gives the long side 7 luminance terms (5 when alpha takes room) and stores
  // the short side's count; every channel is encoded with at least 3 terms a side.
  const longTerms = hasAlpha ? 5 : 7;
  const shortTerms = h16 & 7;
  const lxRaw = landscape ? longTerms : shortTerms;
  const lyRaw = landscape ? shortTerms : longTerms;
  return {
    hasAlpha,
    lDc: (h24 & 63) / 63,
    pDc: ((h24 >> 6) & 63) / 31.5 - 1,
    qDc: ((h24 >> 12) & 63) / 31.5 - 1,
    lScale: ((h24 >> 18) & 31) / 31,
    pScale: ((h16 >> 3) & 63) / 63,
    qScale: ((h16 >> 9) & 63) / 63,
    aDc: hasAlpha ? (hash[5] & 15) / 15 : 1,
    aScale: hasAlpha ? (hash[5] >> 4) / 15 : 0,
    lx: Math.max(3, lxRaw),
    ly: Math.max(3, lyRaw),
    ratio: lyRaw > 0 ? lxRaw / lyRaw : 1,
    acStart: hasAlpha ? 6 : 5,
  };
}

/** The width / height of the hashed image, as far as the hash knows it. */
export function approximateAspectRatio(hash) {
  return readHeader(hash).ratio;
}

/** The (cx, cy) terms of one channel, in the order the encoder wrote them. */
function terms(nx, ny) {
  const out = [];
  for (let cy = 0; cy < ny; cy++) {
    for (let cx = 0; cx * ny < nx * (ny - cy); cx++) {
      if (cx > 0 || cy > 0) out.push([cx, cy]);
    }
  }
  return out;
}

/**
 * Decodes a ThumbHash (bytes) into {w, h, rgba} (straight alpha). `ratio` (width / height)
 * may give the real aspect ratio when the caller knows it; the hash's own is approximate.
 */
export function thumbHashToRGBA(hash, ratio) {
  const hd = readHeader(hash);
  const aspect = ratio > 0 && Number.isFinite(ratio) ? ratio : hd.ratio;
  const w = Math.max(1, Math.round(aspect > 1 ? SIZE : SIZE * aspect));
  const h = Math.max(1, Math.round(aspect > 1 ? SIZE / aspect : SIZE));

  // The AC terms: 4-bit values in 0..15 standing for -1..1 times the channel's scale.
  let nibble = 0;
  const next = () => {
    const byte = hash[hd.acStart + (nibble >> 1)];
    if (byte === undefined) throw new Error("ThumbHash too short");
    const v = (nibble & 1 ? byte >> 4 : byte) & 15;
    nibble++;
    return v;
  };
  const channel = (nx, ny, scale) =>
    terms(nx, ny).map(([cx, cy]) => ({ cx, cy, f: (next() / 7.5 - 1) * scale }));
  // Chroma is boosted a little: quantisation to 4 bits loses saturation.
  const l = channel(hd.lx, hd.ly, hd.lScale);
  const p = channel(3, 3, hd.pScale * 1.25);
  const q = channel(3, 3, hd.qScale * 1.25);
  const a = hd.hasAlpha ? channel(5, 5, hd.aScale) : [];

  // Cosine tables per axis, for every term index any channel uses.
  const nx = Math.max(hd.lx, hd.hasAlpha ? 5 : 3);
  const ny = Math.max(hd.ly, hd.hasAlpha ? 5 : 3);
  const cosX = table(w, nx);
  const cosY = table(h, ny);

  // The inverse of the encoder's average (sum / pixels) over cosines: every AC term counts
  // twice, as in the format's reference decoder.
  const sum = (terms_, x, y, dc) => {
    let v = dc;
    for (const t of terms_) v += 2 * t.f * cosX[t.cx * w + x] * cosY[t.cy * h + y];
    return v;
  };

  const rgba = new Uint8ClampedArray(w * h * 4);
  for (let y = 0, i = 0; y < h; y++) {
    for (let x = 0; x < w; x++, i += 4) {
      const lv = sum(l, x, y, hd.lDc);
      const pv = sum(p, x, y, hd.pDc);
      const qv = sum(q, x, y, hd.qDc);
      const av = hd.hasAlpha ? sum(a, x, y, hd.aDc) : 1;
      // l = (r + g + b) / 3, p = (r + g) / 2 - b, q = r - g, solved for r, g, b.
      const b = lv - (2 / 3) * pv;
      const r = (3 * lv - b + qv) / 2;
      const g = r - qv;
      rgba[i] = 255 * clamp01(r);
      rgba[i + 1] = 255 * clamp01(g);
      rgba[i + 2] = 255 * clamp01(b);
      rgba[i + 3] = 255 * clamp01(av);
    }
  }
  return { w, h, rgba };
}

function table(size, count) {
  const out = new Float64Array(size * count);
  for (let c = 0; c < count; c++) {
    for (let i = 0; i < size; i++) out[c * size + i] = Math.cos((Math.PI / size) * c * (i + 0.5));
  }
  return out;
}

function clamp01(v) {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/** The average colour of a hash, as "rgb(r g b / a)", for a background behind it. */
export function thumbHashAverage(hash) {
  const hd = readHeader(hash);
  const b = hd.lDc - (2 / 3) * hd.pDc;
  const r = (3 * hd.lDc - b + hd.qDc) / 2;
  const g = r - hd.qDc;
  const c = (v) => Math.round(255 * clamp01(v));
  return `rgb(${c(r)} ${c(g)} ${c(b)} / ${clamp01(hd.aDc).toFixed(2)})`;
}

/** A PNG data URL of the decoded hash, drawn on a canvas. */
export function thumbHashToDataURL(base64, ratio) {
  const { w, h, rgba } = thumbHashToRGBA(base64ToBytes(base64), ratio);
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.putImageData(new ImageData(rgba, w, h), 0, 0);
  return canvas.toDataURL("image/png");
}
