/**
 * Lossless JSON for descriptors. Mooncake writes 64-bit addresses as exact
 * integer digits (jsoncpp), and Node 20's JSON.parse rounds anything above
 * 2^53. This parser returns integers outside the safe range as bigint (up to
 * 20 digits: every 64-bit value), keeps every other number a number, and
 * bounds nesting depth so hostile input cannot exhaust the stack.
 */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue };

export class JsonSyntaxError extends SyntaxError {
  constructor(message: string, readonly position: number) {
    super(`${message} at position ${position}`);
  }
}

const MAX_DEPTH = 64;
/** Digits of the longest 64-bit integer (u64 max, 18446744073709551615). */
const MAX_INTEGER_DIGITS = 20;

export interface ParseJsonOptions {
  /**
   * Return every integer literal of up to 20 digits as bigint, so callers can tell `1000` from `1e3`
   * or `1000.0`. Longer ones, in either mode, are numbers (no 64-bit value has more digits).
   */
  bigintIntegers?: boolean;
}

export function parseJson(text: string, options: ParseJsonOptions = {}): JsonValue {
  const bigintIntegers = options.bigintIntegers === true;
  let i = 0;
  const n = text.length;

  const fail = (msg: string): never => {
    throw new JsonSyntaxError(msg, i);
  };
  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const literal = (word: string, value: JsonValue): JsonValue => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return value;
    }
    return fail('unexpected token');
  };

  const parseString = (): string => {
    // Find the closing quote; delegate escapes to JSON.parse on the exact slice.
    const start = i;
    i++;
    let escaped = false;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        const raw = text.slice(start, i);
        if (!escaped) {
          for (let k = 1; k < raw.length - 1; k++) if (raw.charCodeAt(k) < 0x20) fail('control character in string');
          return raw.slice(1, -1);
        }
        try {
          return JSON.parse(raw) as string;
        } catch {
          return fail('bad string escape');
        }
      }
      if (c === 0x5c) {
        escaped = true;
        i += 2;
        continue;
      }
      i++;
    }
    return fail('unterminated string');
  };

  const parseNumber = (): number | bigint => {
    const start = i;
    if (text[i] === '-') i++;
    if (text[i] === '0') i++;
    else if (text[i]! >= '1' && text[i]! <= '9') while (text[i]! >= '0' && text[i]! <= '9') i++;
    else fail('bad number');
    let integral = true;
    if (text[i] === '.') {
      integral = false;
      i++;
      if (!(text[i]! >= '0' && text[i]! <= '9')) fail('bad fraction');
      while (text[i]! >= '0' && text[i]! <= '9') i++;
    }
    if (text[i] === 'e' || text[i] === 'E') {
      integral = false;
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      if (!(text[i]! >= '0' && text[i]! <= '9')) fail('bad exponent');
      while (text[i]! >= '0' && text[i]! <= '9') i++;
    }
    const raw = text.slice(start, i);
    const num = Number(raw);
    // Beyond 20 digits no literal is a 64-bit integer: a double, as jsoncpp makes it. BigInt() of a
    // megabyte of digits would block the event loop for seconds (its cost grows faster than the length).
    const digits = raw.length - (raw.charCodeAt(0) === 0x2d ? 1 : 0);
    if (integral && (bigintIntegers || !Number.isSafeInteger(num)) && digits <= MAX_INTEGER_DIGITS) return BigInt(raw);
    return num;
  };

  const parseValue = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail('nesting too deep');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: { [key: string]: JsonValue } = {};
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected key');
        const key = parseString();
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        const v = parseValue(depth + 1);
        // Own-property define: a "__proto__" key must not touch the prototype.
        Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return parseString();
    if (c === 't') return literal('true', true);
    if (c === 'f') return literal('false', false);
    if (c === 'n') return literal('null', null);
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return parseNumber();
    return fail(c === undefined ? 'unexpected end of input' : 'unexpected token');
  };

  const value = parseValue(0);
  ws();
  if (i !== n) fail('trailing characters');
  return value;
}

/** Serialize, writing bigints as exact integer digits (never floats or exponents). */
export function stringifyJson(value: JsonValue): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'bigint':
      return value.toString();
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('non-finite number in JSON');
      // BigInt() keeps large integral doubles in plain digits (toFixed/String would use exponents).
      return Number.isInteger(value) ? BigInt(value).toString() : String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    default:
      break;
  }
  if (Array.isArray(value)) return `[${value.map(stringifyJson).join(',')}]`;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(value)) parts.push(`${JSON.stringify(k)}:${stringifyJson(v)}`);
  return `{${parts.join(',')}}`;
}

export function isJsonObject(v: JsonValue | undefined): v is { [key: string]: JsonValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
