// s3.mjs - requests to the S3 test server (radosgw on loopback), signed with AWS
// Signature Version 4 by the `aws4` npm package (pinned in run.sh): what read.mjs
// needs to let icebird read a table on S3, and what e2e.mjs needs to look at the
// objects of an s3:// lake.
//
// The server, the credentials and the region come from the environment that
// scripts/s3-test-server prints (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION). Requests are path style
// (ENDPOINT/BUCKET/KEY): radosgw has no DNS for bucket hosts.
import aws4 from 'aws4'

const env = process.env
const endpoint = new URL(env.AWS_ENDPOINT_URL || 'http://127.0.0.1:1')
const credentials = { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY }

// Each segment of a key as S3 wants it in a path, so that the path sent is the one signed.
const encodeKey = key =>
  key.split('/').map(s => encodeURIComponent(s).replace(/[!'()*]/g, c => '%' + c.charCodeAt(0).toString(16).toUpperCase()))
    .join('/')

// A GET (or another method) of BUCKET/KEY?QUERY on the test server, signed; the
// caller's headers (such as Range) are kept and signed too. QUERY is an object.
export function s3Fetch(realFetch, bucket, key, { method = 'GET', headers = {}, query = {} } = {}) {
  const qs = new URLSearchParams(Object.entries(query).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))).toString()
  const path = `/${bucket}/${encodeKey(key)}${qs ? '?' + qs : ''}`
  const opts = aws4.sign({ host: endpoint.host, path, method, service: 's3', region: env.AWS_REGION || 'us-east-1',
    headers: { ...headers } }, credentials)
  const sent = { ...opts.headers }
  delete sent.Host // fetch sends the same host itself
  return realFetch(`${endpoint.origin}${path}`, { method, headers: sent })
}

// globalThis.fetch, wrapped: what icebird asks of https://BUCKET.s3.amazonaws.com/KEY
// (its reading of s3://BUCKET/KEY) goes to the test server, signed; the rest as before.
export function routeS3ToTestServer() {
  const realFetch = globalThis.fetch
  const aws = /^https:\/\/([a-z0-9.-]+)\.s3\.amazonaws\.com\/(.*)$/
  globalThis.fetch = (input, init = {}) => {
    const url = typeof input === 'string' ? input : input.url
    const m = aws.exec(url)
    if (!m) return realFetch(input, init)
    const u = new URL(url)
    const headers = Object.fromEntries(new Headers(init.headers).entries())
    return s3Fetch(realFetch, m[1], decodeURIComponent(u.pathname.slice(1)),
      { method: init.method || 'GET', headers, query: Object.fromEntries(u.searchParams) })
  }
}

// The keys under PREFIX in BUCKET (ListObjectsV2, every page; bounded).
export async function s3List(bucket, prefix) {
  const keys = []
  let token
  for (let page = 0; page < 1000; page++) {
    const query = { 'list-type': '2', prefix, ...(token ? { 'continuation-token': token } : {}) }
    const res = await s3Fetch(globalThis.fetch, bucket, '', { query })
    const xml = await res.text()
    if (!res.ok) throw new Error(`listing s3://${bucket}/${prefix}: HTTP ${res.status}: ${xml}`)
    for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(unxml(m[1]))
    const next = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)
    if (!/<IsTruncated>true<\/IsTruncated>/.test(xml)) return keys
    if (!next) throw new Error(`listing s3://${bucket}/${prefix}: truncated without a continuation token`)
    token = unxml(next[1])
  }
  throw new Error(`listing s3://${bucket}/${prefix}: more than 1000 pages`)
}

// An object's text.
export async function s3Text(bucket, key) {
  const res = await s3Fetch(globalThis.fetch, bucket, key)
  const text = await res.text()
  if (!res.ok) throw new Error(`reading s3://${bucket}/${key}: HTTP ${res.status}: ${text}`)
  return text
}

const unxml = s => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'")
  .replace(/&amp;/g, '&')
