// Address books in the browser: read numbers from a vCard or CSV file, normalise them to E.164
// digits and hash them (MSC2134) so that no number leaves the device in the clear.
//
// The normaliser is deliberately simple (no libphonenumber in the browser):
//   1. keep digits and a leading "+"; drop spaces, dashes, dots, brackets;
//   2. "+<digits>"        -> the digits (already international);
//   3. "00<digits>"       -> the digits after "00" (international call prefix);
//   4. otherwise national -> drop one leading trunk "0", prepend the default country code;
//   5. keep it only if it has 8 to 15 digits (E.164 allows at most 15).
// A number written in another country's national format is hashed wrongly and simply finds
// nobody; nothing else is guessed.

export function normalise(raw, defaultCountryCode) {
  let s = String(raw).trim().replace(/^tel:/i, "");
  s = s.replace(/[\s\-.()\/]/g, "");
  let digits;
  if (s.startsWith("+")) digits = s.slice(1);
  else if (s.startsWith("00")) digits = s.slice(2);
  else {
    const cc = String(defaultCountryCode || "").replace(/\D/g, "");
    if (!cc) return null;
    digits = cc + s.replace(/^0/, "");
  }
  if (!/^\d{8,15}$/.test(digits)) return null;
  return digits;
}

// The numbers of a vCard file: the value of every TEL line (unfolded).
export function numbersFromVCard(text) {
  const unfolded = text.replace(/\r?\n[ \t]/g, "");
  const out = [];
  for (const line of unfolded.split(/\r?\n/)) {
    if (/^(item\d+\.)?TEL[;:]/i.test(line)) out.push(line.slice(line.indexOf(":") + 1));
  }
  return out;
}

// The numbers of a CSV file: every cell that looks like a phone number (6+ digits, only phone
// punctuation), whatever its column.
export function numbersFromCsv(text) {
  const out = [];
  for (const line of text.split(/\r?\n/)) {
    for (let cell of line.split(/[,;\t]/)) {
      cell = cell.trim().replace(/^"|"$/g, "").trim();
      if (/^\+?[\d\s\-.()\/]{6,}$/.test(cell) && cell.replace(/\D/g, "").length >= 6) out.push(cell);
    }
  }
  return out;
}

export function numbersFromFile(name, text) {
  const vcard = /\.vcf$/i.test(name) || /^BEGIN:VCARD/im.test(text);
  return vcard ? numbersFromVCard(text) : numbersFromCsv(text);
}

// Distinct E.164 digit strings of a file's numbers.
export function addressBook(name, text, defaultCountryCode) {
  const set = new Set();
  for (const raw of numbersFromFile(name, text)) {
    const n = normalise(raw, defaultCountryCode);
    if (n) set.add(n);
  }
  return [...set];
}

function base64UrlUnpadded(bytes) {
  let bin = "";
  for (const b of new Uint8Array(bytes)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// unpadded_urlsafe_b64(sha256("<msisdn> msisdn <pepper>")), as rooms/discovery.py:lookup_hash.
export async function lookupHash(msisdn, pepper) {
  if (!globalThis.crypto || !crypto.subtle) {
    throw new Error("WebCrypto is not available: open the app over https (or on localhost).");
  }
  const data = new TextEncoder().encode(`${msisdn} msisdn ${pepper}`);
  return base64UrlUnpadded(await crypto.subtle.digest("SHA-256", data));
}
