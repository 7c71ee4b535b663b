"""Tweet text patterns, in one place: the twitter-text style entity finders and the simple
patterns the stages share.

Why one module: which part of a tweet is a URL, a mention, a hashtag or a retweet marker is one
question, and the clean, filter, near-dedup and stats stages (and the parser) must answer it the
same way. Two kinds of patterns live here:

* **Finders** (``find_urls``, ``find_mentions``, ``find_emails``, ``find_phones``): exact spans,
  following twitter-text's rules (``find_urls`` and ``find_mentions`` are conformance-tested against
  twitter-text's test suite, with the deviations each documents). The clean stage replaces these
  spans by placeholders, so precision matters more than speed here, and each finder has a cheap
  pre-check that rules out most tweets.
* **Simple compiled regexes** (``HASHTAG``, ``CASHTAG``, ``MENTION``, ``URL_SIMPLE``,
  ``MANUAL_RETWEET``, ``RT_MARKER``, ``REPLY_PREFIX``): for counting and for texts that are already
  cleaned (where URLs are ``<URL>`` placeholders or ``https://...`` tokens), where a rough,
  fast, predictable pattern is what is wanted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "CASHTAG",
    "COUNTRY_TLDS",
    "GENERIC_TLDS",
    "HASHTAG",
    "MANUAL_RETWEET",
    "MENTION",
    "REPLY_PREFIX",
    "RT_MARKER",
    "URL_SIMPLE",
    "find_emails",
    "find_mentions",
    "find_phones",
    "find_urls",
]

# --------------------------------------------------------------------------------------------
# Simple shared patterns
#
# Each starts with a literal character and puts its "what comes before" test (a lookbehind) after
# it: the regex engine then skips, in one scan, the positions where none can start, also in the
# alternations the filters build from them (``(?<!\S)RT`` would be tried at every position: 4x
# slower on tweets). ``#(?<![\w&]#)`` reads "a # not preceded by a word character or &".

#: A hashtag: ``#`` + word characters (Python's ``\w``) with at least one non-digit, not preceded by a
#: word character or ``&`` (Twitter's rule, roughly; ``&#39;`` is no hashtag). Group 1 is the tag
#: without ``#``. The stats stage counts exactly what ``HASHTAG.findall`` finds, case-folded.
HASHTAG = re.compile(r"#(?<![\w&]#)(\w*[^\W\d]\w*)")
#: A cashtag (twitter-text's rule, roughly): ``$`` + 1-6 ASCII letters with an optional ``.xx`` / ``_xx``
#: suffix (``$AAPL``, ``$BRK.A``), at the start or after whitespace, not followed by a word
#: character or ``$`` (``$100`` and ``$AAPLXYZ`` are none). Group 1 is the symbol without ``$``.
CASHTAG = re.compile(r"\$(?<!\S\$)([A-Za-z]{1,6}(?:[._][A-Za-z]{1,2})?)(?![\w$])")
#: An @mention for counting or blanking out: ``@`` + word characters, anywhere (also inside an
#: e-mail address). ``find_mentions`` is the precise twitter-text rule.
MENTION = re.compile(r"@\w+")
#: One of the clean stage's placeholders (``<URL>``, ``<EMAIL>``, ``<PHONE>``); ``@user`` is a ``MENTION``.
PLACEHOLDER = re.compile(r"<[A-Z]+>")
#: A URL with its protocol, up to the next whitespace (trailing punctuation included). ``find_urls``
#: is the precise twitter-text rule, which also finds bare domains.
URL_SIMPLE = re.compile(r"https?://\S+")
#: A manual retweet: the text starts (after optional whitespace) with ``RT`` and an @mention, with or
#: without a space between (``RT @user: ...``, ``RT@user ...``). Use with ``search`` or ``match``.
MANUAL_RETWEET = re.compile(r"^\s*RT\s*@\w+")
#: The retweet marker ``RT`` as a word of its own, at the start or after whitespace, anywhere in the
#: text (``... RT @user ...``): case-sensitive, so the word "rt" in a sentence is none.
RT_MARKER = re.compile(r"R(?<!\SR)T\b")
#: The hidden reply prefix: the leading run of @mentions a reply starts with (hidden by Twitter's
#: clients). Each mention (twitter-text's screen-name rule: 1-20 of ``[A-Za-z0-9_]``) is followed by
#: whitespace or ends the text; "@bob's idea" or "@bob: hi" are visible text, not a prefix. Only
#: ``" "`` and ``"\n"`` count as whitespace: the clean stage normalises whitespace first.
REPLY_PREFIX = re.compile(r"[ \n]*(?:[@＠][A-Za-z0-9_]{1,20}(?:[ \n]+|\Z))+")

# --------------------------------------------------------------------------------------------
# Entity finders: URLs, mentions (twitter-text rules), e-mails, phone numbers

# twitter-text's character groups (js/src/regexp/*.js at the conformance commit).
_LATIN_ACCENTS = (
    "\xc0-\xd6\xd8-\xf6\xf8-\xff\u0100-\u024f\u0253\u0254\u0256\u0257\u0259\u025b\u0263\u0268\u026f"
    "\u0272\u0289\u028b\u02bb\u0300-\u036f\u1e00-\u1eff"
)
_CYRILLIC = "\u0400-\u04ff"
_DIRECTIONAL = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_INVALID_CHARS = "\ufffe\ufeff\uffff"
_UNICODE_SPACES = "\t-\r \x85\xa0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_PUNCT = r"""!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~"""

# The IANA TLD lists twitter-text builds its URL regex from (conformance/tld_lib.yml at twitter-text
# 30e2430d); tests check this copy against that file.
_GENERIC_TLDS = """
삼성 닷컴 닷넷 香格里拉 餐厅 食品 飞利浦 電訊盈科 集团 通販 购物 谷歌 诺基亚 联通 网络 网站 网店
网址 组织机构 移动 珠宝 点看 游戏 淡马锡 机构 書籍 时尚 新闻 政府 政务 招聘 手表 手机 我爱你
慈善 微博 广东 工行 家電 娱乐 天主教 大拿 大众汽车 在线 嘉里大酒店 嘉里 商标 商店 商城 公益 公司
八卦 健康 信息 佛山 企业 中文网 中信 世界 ポイント ファッション セール ストア コム グーグル
クラウド みんな คอม संगठन नेट कॉम همراه موقع موبايلي كوم كاثوليك عرب شبكة بيتك بازار العليان
ارامكو اتصالات ابوظبي קום сайт рус орг онлайн москва ком католик дети zuerich zone zippo zip
zero zara zappos yun youtube you yokohama yoga yodobashi yandex yamaxun yahoo yachts xyz xxx
xperia xin xihuan xfinity xerox xbox wtf wtc wow world works work woodside wolterskluwer wme
winners wine windows win williamhill wiki wien whoswho weir weibo wedding wed website weber
webcam weatherchannel weather watches watch warman wanggou wang walter walmart wales vuelos
voyage voto voting vote volvo volkswagen vodka vlaanderen vivo viva vistaprint vista vision visa
virgin vip vin villas viking vig video viajes vet versicherung vermögensberatung
vermögensberater verisign ventures vegas vanguard vana vacations ups uol uno university unicom
uconnect ubs ubank tvs tushu tunes tui tube trv trust travelersinsurance travelers travelchannel
travel training trading trade toys toyota town tours total toshiba toray top tools tokyo today
tmall tkmaxx tjx tjmaxx tirol tires tips tiffany tienda tickets tiaa theatre theater thd teva
tennis temasek telefonica telecity tel technology tech team tdk tci taxi tax tattoo tatar
tatamotors target taobao talk taipei tab systems symantec sydney swiss swiftcover swatch suzuki
surgery surf support supply supplies sucks style study studio stream store storage stockholm
stcgroup stc statoil statefarm statebank starhub star staples stada srt srl spreadbetting spot
sport spiegel space soy sony song solutions solar sohu software softbank social soccer sncf
smile smart sling skype sky skin ski site singles sina silk shriram showtime show shouji
shopping shop shoes shiksha shia shell shaw sharp shangrila sfr sexy sex sew seven ses services
sener select seek security secure seat search scot scor scjohnson science schwarz schule school
scholarships schmidt schaeffler scb sca sbs sbi saxo save sas sarl sapo sap sanofi
sandvikcoromant sandvik samsung samsclub salon sale sakura safety safe saarland ryukyu rwe run
ruhr rugby rsvp room rogers rodeo rocks rocher rmit rip rio ril rightathome ricoh richardli rich
rexroth reviews review restaurant rest republican report repair rentals rent ren reliance reit
reisen reise rehab redumbrella redstone red recipes realty realtor realestate read raid radio
racing qvc quest quebec qpon pwc pub prudential pru protection property properties promo
progressive prof productions prod pro prime press praxi pramerica post porn politie poker pohl
pnc plus plumbing playstation play place pizza pioneer pink ping pin pid pictures pictet pics
piaget physio photos photography photo phone philips phd pharmacy pfizer pet pccw pay passagens
party parts partners pars paris panerai panasonic pamperedchef page ovh ott otsuka osaka origins
orientexpress organic org orange oracle open ooo onyourside online onl ong one omega ollo
oldnavy olayangroup olayan okinawa office off observer obi nyc ntt nrw nra nowtv nowruz now
norton northwesternmutual nokia nissay nissan ninja nikon nike nico nhk ngo nfl nexus nextdirect
next news newholland new neustar network netflix netbank net nec nba navy natura nationwide name
nagoya nadex nab mutuelle mutual museum mtr mtpc mtn msd movistar movie mov motorcycles moto
moscow mortgage mormon mopar montblanc monster money monash mom moi moe moda mobily mobile mobi
mma mls mlb mitsubishi mit mint mini mil microsoft miami metlife merckmsd meo menu men memorial
meme melbourne meet media med mckinsey mcdonalds mcd mba mattel maserati marshalls marriott
markets marketing market map mango management man makeup maison maif madrid macys luxury luxe
lupin lundbeck ltda ltd lplfinancial lpl love lotto lotte london lol loft locus locker loans
loan llp llc lixil living live lipsy link linde lincoln limo limited lilly like lighting
lifestyle lifeinsurance life lidl liaison lgbt lexus lego legal lefrak leclerc lease lds lawyer
law latrobe latino lat lasalle lanxess landrover land lancome lancia lancaster lamer lamborghini
ladbrokes lacaixa kyoto kuokgroup kred krd kpn kpmg kosher komatsu koeln kiwi kitchen kindle
kinder kim kia kfh kerryproperties kerrylogistics kerryhotels kddi kaufen juniper juegos jprs
jpmorgan joy jot joburg jobs jnj jmp jll jlc jio jewelry jetzt jeep jcp jcb java jaguar iwc
iveco itv itau istanbul ist ismaili iselect irish ipiranga investments intuit international
intel int insure insurance institute ink ing info infiniti industries inc immobilien immo imdb
imamat ikano iinet ifm ieee icu ice icbc ibm hyundai hyatt hughes htc hsbc how house hotmail
hotels hoteles hot hosting host hospital horse honeywell honda homesense homes homegoods
homedepot holiday holdings hockey hkt hiv hitachi hisamitsu hiphop hgtv hermes here helsinki
help healthcare health hdfcbank hdfc hbo haus hangout hamburg hair guru guitars guide guge gucci
guardian group grocery gripe green gratis graphics grainger gov got gop google goog goodyear
goodhands goo golf goldpoint gold godaddy gmx gmo gmbh gmail globo global gle glass glade giving
gives gifts gift ggee george genting gent gea gdn gbiz gay garden gap games game gallup gallo
gallery gal fyi futbol furniture fund fun fujixerox fujitsu ftr frontier frontdoor frogans frl
fresenius free fox foundation forum forsale forex ford football foodnetwork food foo fly
flsmidth flowers florist flir flights flickr fitness fit fishing fish firmdale firestone fire
financial finance final film fido fidelity fiat ferrero ferrari feedback fedex fast fashion
farmers farm fans fan family faith fairwinds fail fage extraspace express exposed expert
exchange everbank events eus eurovision etisalat esurance estate esq erni ericsson equipment
epson epost enterprises engineering engineer energy emerck email education edu edeka eco eat
earth dvr dvag durban dupont duns dunlop duck dubai dtv drive download dot doosan domains doha
dog dodge doctor docs dnp diy dish discover discount directory direct digital diet diamonds dhl
dev design desi dentist dental democrat delta deloitte dell delivery degree deals dealer deal
dds dclk day datsun dating date data dance dad dabur cyou cymru cuisinella csc cruises cruise
crs crown cricket creditunion creditcard credit cpa courses coupons coupon country corsica coop
cool cookingchannel cooking contractors contact consulting construction condos comsec computer
compare company community commbank comcast com cologne college coffee codes coach clubmed club
cloud clothing clinique clinic click cleaning claims cityeats city citic citi citadel cisco
circle cipriani church chrysler chrome christmas chloe chintai cheap chat chase charity channel
chanel cfd cfa cern ceo center ceb cbs cbre cbn cba catholic catering cat casino cash caseih
case casa cartier cars careers career care cards caravan car capitalone capital capetown canon
cancerresearch camp camera cam calvinklein call cal cafe cab bzh buzz buy business builders
build bugatti budapest brussels brother broker broadway bridgestone bradesco box boutique bot
boston bostik bosch boots booking book boo bond bom bofa boehringer boats bnpparibas bnl bmw bms
blue bloomberg blog blockbuster blanco blackfriday black biz bio bingo bing bike bid bible
bharti bet bestbuy best berlin bentley beer beauty beats bcn bcg bbva bbt bbc bayern bauhaus
basketball baseball bargains barefoot barclays barclaycard barcelona bar bank band
bananarepublic banamex baidu baby azure axa aws avianca autos auto author auspost audio audible
audi auction attorney athleta associates asia asda arte art arpa army archi aramco arab
aquarelle apple app apartments aol anz anquan android analytics amsterdam amica amfam amex
americanfamily americanexpress alstom alsace ally allstate allfinanz alipay alibaba alfaromeo
akdn airtel airforce airbus aigo aig agency agakhan africa afl afamilycompany aetna aero aeg
adult ads adac actor active aco accountants accountant accenture academy abudhabi abogado able
abc abbvie abbott abb abarth aarp aaa onion
"""
_COUNTRY_TLDS = """
한국 香港 澳門 新加坡 台灣 台湾 中國 中国 გე ລາວ ไทย ලංකා ഭാരതം ಭಾರತ భారత్ சிங்கப்பூர் இலங்கை இந்தியா
ଭାରତ ભારત ਭਾਰਤ ভাৰত ভারত বাংলা भारोत भारतम् भारत ڀارت پاکستان موريتانيا مليسيا مصر قطر فلسطين
عمان عراق سورية سودان تونس بھارت بارت ایران امارات المغرب السعودية الجزائر البحرين الاردن հայ
қаз укр срб рф мон мкд ею бел бг ευ ελ zw zm za yt ye ws wf vu vn vi vg ve vc va uz uy us um uk
ug ua tz tw tv tt tr tp to tn tm tl tk tj th tg tf td tc sz sy sx sv su st ss sr so sn sm sl sk
sj si sh sg se sd sc sb sa rw ru rs ro re qa py pw pt ps pr pn pm pl pk ph pg pf pe pa om nz nu
nr np no nl ni ng nf ne nc na mz my mx mw mv mu mt ms mr mq mp mo mn mm ml mk mh mg mf me md mc
ma ly lv lu lt ls lr lk li lc lb la kz ky kw kr kp kn km ki kh kg ke jp jo jm je it is ir iq io
in im il ie id hu ht hr hn hm hk gy gw gu gt gs gr gq gp gn gm gl gi gh gg gf ge gd gb ga fr fo
fm fk fj fi eu et es er eh eg ee ec dz do dm dk dj de cz cy cx cw cv cu cr co cn cm cl ck ci ch
cg cf cd cc ca bz by bw bv bt bs br bq bo bn bm bl bj bi bh bg bf be bd bb ba az ax aw au at as
ar aq ao an am al ai ag af ae ad ac
"""
GENERIC_TLDS: tuple[str, ...] = tuple(_GENERIC_TLDS.split())
COUNTRY_TLDS: tuple[str, ...] = tuple(_COUNTRY_TLDS.split())


def _trie_pattern(words: Iterable[str]) -> str:
    """An alternation of ``words`` as a prefix trie: far faster for re than 1,500 flat branches."""
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict) -> str:
        alternatives = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


_TLD = "(?:" + _trie_pattern(GENERIC_TLDS + COUNTRY_TLDS) + ")(?=[^0-9a-z@+-]|\\Z)"
_PUNYCODE = "xn--[-0-9a-z]+"
_DOMAIN_CHAR = f"[^{_PUNCT}{_UNICODE_SPACES}{_INVALID_CHARS}{_DIRECTIONAL}\x00-\x1f\x7f]"
_SUBDOMAIN = f"(?:(?:{_DOMAIN_CHAR}(?:[_-]|{_DOMAIN_CHAR})*)?{_DOMAIN_CHAR}\\.)"
_DOMAIN_NAME = f"(?:(?:{_DOMAIN_CHAR}(?:-|{_DOMAIN_CHAR})*)?{_DOMAIN_CHAR}\\.)"
_DOMAIN = f"(?:{_SUBDOMAIN}*{_DOMAIN_NAME}(?:{_TLD}|{_PUNYCODE}))"
_PATH_CHAR = f"[a-z{_CYRILLIC}0-9!*';:=+,.$/%#\\[\\]\\-\u2013_~@|&{_LATIN_ACCENTS}]"
_BALANCED_PARENS = f"\\((?:{_PATH_CHAR}+|(?:{_PATH_CHAR}*\\({_PATH_CHAR}+\\){_PATH_CHAR}*))\\)"
_PATH_END = f"(?:[+\\-a-z{_CYRILLIC}0-9=_#/{_LATIN_ACCENTS}]|{_BALANCED_PARENS})"
_PATH = f"(?:(?:{_PATH_CHAR}*(?:{_BALANCED_PARENS}{_PATH_CHAR}*)*{_PATH_END})|(?:@{_PATH_CHAR}+/))"
_QUERY_CHARS = r"[a-z0-9!?*'@();:&=+$/%#\[\]\-_.,~|]"
_QUERY_END = r"[a-z0-9\-_&=#/]"
_URL_RE = re.compile(
    f"(?<![A-Za-z0-9@＠$#＃{_INVALID_CHARS}])"  # twitter-text's validUrlPrecedingChars
    f"(?P<protocol>https?://)?(?P<domain>{_DOMAIN})(?::[0-9]+)?"
    f"(?P<path>/{_PATH}*)?(?:\\?{_QUERY_CHARS}*{_QUERY_END})?",
    re.IGNORECASE,
)
# Every URL has ".<tld>" (or ".xn--"): a literal-led scan that rules out most tweets in ~1 µs.
_URL_HINT_RE = re.compile(f"\\.(?:{_TLD}|xn--)", re.IGNORECASE)
_ASCII_DOMAIN_RE = re.compile(f"(?:[-a-z0-9{_LATIN_ACCENTS}]+\\.)+(?:{_TLD}|{_PUNYCODE})", re.IGNORECASE)
_TCO_RE = re.compile(f"https?://t\\.co/([a-z0-9]+)(?:\\?{_QUERY_CHARS}*{_QUERY_END})?", re.IGNORECASE)
_MAX_URL_LENGTH = 4096
_URL_BREAKS = frozenset(" \t\n\x0b\x0c\r\x85\xa0\u1680\u180e\u2028\u2029\u202f\u205f\u3000").union(
    map(chr, range(0x2000, 0x200B))
)  # _UNICODE_SPACES: no URL spans one
_MAX_TCO_SLUG_LENGTH = 40


def _valid_domain(domain: str, url_length: int, has_protocol: bool) -> bool:
    """twitter-text's isValidUrl: the domain must IDNA-encode, the URL stay within 4096 chars."""
    if domain.isascii():
        encoded_length = len(domain)
        if any(len(label) > 63 for label in domain.split(".")):
            return False
    else:
        try:
            encoded_length = len(domain.encode("idna"))
        except UnicodeError:
            return False
    protocol_length = 0 if has_protocol else len("https://")
    return protocol_length + url_length + encoded_length - len(domain) <= _MAX_URL_LENGTH


def _titlecase_tld(domain: str) -> bool:
    tld = domain.rsplit(".", 1)[-1]
    return len(tld) > 1 and tld.istitle()


def find_urls(text: str) -> list[tuple[int, int]]:
    """Spans of the URLs twitter-text would extract (``extractUrlsWithIndices``), in order.

    One deviation: a bare domain (no protocol, no path) whose TLD is Titlecase is no URL.
    """
    if "." not in text:
        return []
    spans: list[tuple[int, int]] = []
    pos = previous_end = 0
    while True:
        # Every match holds a ".tld" and no whitespace: start at the token of the next ".tld".
        hint = _URL_HINT_RE.search(text, pos)
        if hint is None:
            break
        token_start = hint.start()
        while token_start > pos and text[token_start - 1] not in _URL_BREAKS:
            token_start -= 1
        match = _URL_RE.search(text, token_start)
        if match is None:
            break
        start, end = match.span()
        if start and start == previous_end:
            # twitter-text's regex consumes the preceding character, which cannot belong to the
            # previous match: a URL cannot start right where one ended, only one character later.
            pos = start + 1
            continue
        pos = previous_end = end
        domain = match.group("domain")
        protocol = match.group("protocol")
        if not _valid_domain(domain, end - start, protocol is not None):
            continue
        if protocol is None:
            # Without a protocol: not after "-_./", and only the ASCII domain(s) inside the match
            # count ("これは日本語です。example.com" → "example.com").
            if start and text[start - 1] in "-_./":
                continue
            offset = match.start("domain")
            found = [(offset + m.start(), offset + m.end()) for m in _ASCII_DOMAIN_RE.finditer(domain)]
            if not found:
                continue
            if match.group("path"):
                found[-1] = (found[-1][0], end)
            else:
                # Deviation from twitter-text: "you.Today" or "Mike.It" is a sentence missing its
                # space, not a link; a bare domain with a Titlecase TLD is dropped (half of the
                # protocol-less matches in the shared corpus were such sentence breaks).
                found = [(s, e) for s, e in found if not _titlecase_tld(text[s:e])]
            spans.extend(found)
        else:
            tco = _TCO_RE.match(text, start, end)
            if tco:
                if len(tco.group(1)) > _MAX_TCO_SLUG_LENGTH:
                    continue
                end = tco.end()
            spans.append((start, end))
    return spans


# Mentions: twitter-text's validMentionOrList + endMentionMatch, with the preceding-character rule
# checked in Python so the regex can start with the at sign (a fast literal scan).
_MENTION_RE = re.compile(r"[@＠]([A-Za-z0-9_]{1,20})(?![A-Za-z0-9_])(/[A-Za-z][A-Za-z0-9_-]{0,24})?")
_MENTION_BAD_BEFORE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_!#$%&*@＠")
_RT_BAD_BEFORE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+~.-")
_MENTION_BAD_AFTER_RE = re.compile(f"[@＠{_LATIN_ACCENTS}]|://")


def _mention_may_start(text: str, at: int) -> bool:
    """twitter-text's validMentionPrecedingChars: start, a non-word char, or ``RT``/``RT:``."""
    if at == 0 or text[at - 1] not in _MENTION_BAD_BEFORE:
        return True
    r = at - 2  # where the "r" of a glued "rt@" would be (a "rt:@" passed above: ":" is fine)
    return (
        r >= 0 and text[r] in "rR" and text[r + 1] in "tT" and (r == 0 or text[r - 1] not in _RT_BAD_BEFORE)
    )


def find_mentions(text: str) -> list[tuple[int, int, str, str]]:
    """``(start, end, screen_name, list_slug)`` of @mentions and @user/list references.

    twitter-text's rules, except that a run of more than 20 name characters is no mention at all
    (twitter-text would link its first 20, leaving a fragment behind a placeholder).
    """
    if "@" not in text and "＠" not in text:
        return []
    found = []
    previous_end = 0
    for match in _MENTION_RE.finditer(text):
        start, end = match.span()
        # (twitter-text consumes the preceding character: it cannot be the previous match's last)
        glued = start and start == previous_end
        previous_end = end
        if glued or not _mention_may_start(text, start):
            continue
        if _MENTION_BAD_AFTER_RE.match(text, end):
            continue
        found.append((start, end, match.group(1), match.group(2) or ""))
    return found


# E-mail addresses: pragmatic ASCII addresses, found from each "@" (cheap: most texts have none
# and those with one usually have a mention, not an address).
_EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
# The TLD must be a real one, ending the address ("x@y.notatld" is none); only .com/.net/.org/.edu
# may run into the next word ("me@gmail.comfollow": still personal data, "<EMAIL>follow" is better).
_EMAIL_DOMAIN_RE = re.compile(
    f"(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\\.)+(?:{_TLD}|(?:com|net|org|edu)(?=[a-z]))",
    re.IGNORECASE,
)


def find_emails(text: str) -> list[tuple[int, int]]:
    """Spans of e-mail addresses (``local@domain.tld``, ASCII; not glued to a word on the left)."""
    spans = []
    at = text.find("@")
    while at != -1:
        start = at
        while start > 0 and text[start - 1] in _EMAIL_LOCAL_CHARS:
            start -= 1
        while start < at and text[start] in ".-+":
            start += 1
        if start < at and not (start and (text[start - 1].isalnum() or text[start - 1] == "_")):
            match = _EMAIL_DOMAIN_RE.match(text, at + 1)
            if match:
                spans.append((start, match.end()))
                at = text.find("@", match.end())
                continue
        at = text.find("@", at + 1)
    return spans


# Phone numbers, conservatively: international numbers (+country code, with separators, or E.164
# without), and North American numbers with separators (NANP: area code and exchange start 2-9).
# Never: years, dates, times, prices, scores, plain digit runs, 7-digit local numbers.
_PHONE_RE = re.compile(
    r"""
    (?<![\w$€£¥+.,/:#@&-])
    (?:
        \+[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]\d{1,8}|(?<=\))\d{1,8})(?:[ .-]\d{1,8}){0,5}
      | \+[1-9]\d{9,13}
      | (?:1[ .-]?)?(?:\([2-9]\d\d\)[ ]?|[2-9]\d\d[ .-])[2-9]\d\d[ .-]\d{4}
    )
    (?![\w%$€£¥+]|[.,:/-]\d)
    """,
    re.VERBOSE,
)
# Every match has "+<digit>" or "<3 digits><sep><4 digits>"-like tails: skip texts without either.
# ``\+\d|\d[ .-]\d{4}``, written to start with one character class (scanned fast, as above).
_PHONE_HINT_RE = re.compile(r"[+\d](?:(?<=\+)\d|(?<=\d)[ .-]\d{4})")


def find_phones(text: str) -> list[tuple[int, int]]:
    """Spans of phone numbers (international with 8-15 digits, or NANP with separators)."""
    if _PHONE_HINT_RE.search(text) is None:
        return []
    spans = []
    for match in _PHONE_RE.finditer(text):
        number = match.group()
        if number.startswith("+"):
            digits = sum(c.isdigit() for c in number)
            if not 8 <= digits <= 15:
                continue
        spans.append(match.span())
    return spans
