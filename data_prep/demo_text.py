"""Colloquial Finnish sentence material of the built-in corpus, written for this project.

The sentences imitate what Lahjoita puhetta donors say about its eight topics: spoken forms
(``mä``, ``sä``, ``meiän``, ``emmä tiiä``, ``ku``, ``sit``, ``kaa``), hesitations (``öö``,
``tota``, ``niinku``) and discourse particles (``no``, ``joo``). An utterance is built by
:func:`data_prep.demo_corpus.compose` from three kinds of material:

* :data:`TOPIC_TEMPLATES`: sentences about one topic; ``{slot}`` fields are filled from
  :data:`SLOTS`, so one template yields many word sequences;
* :data:`SHARED_TEMPLATES`: sentences that two topics share (a day at the lake is summer or nature,
  a dog heard through the window is animals or surroundings), so a transcript can be ambiguous;
* :data:`GENERIC_TEMPLATES`: sentences that say nothing about the topic, as donors ramble;

wrapped in generic :data:`OPENERS` and :data:`CLOSERS` that every topic uses. Shared and generic
sentences, shared slot fillers (``{aika}``, ``{kenen_kaa}``, ``{arvio}``) and words that recur in
several topics (``kotona``, ``netistä``, ``järvellä``, ``lenkille``) keep a bag-of-words classifier
well below 100 % test accuracy while leaving the topics learnable.

The vocabulary is kept moderate (a few hundred word forms) and every sentence is plain Finnish
orthography without digits or abbreviations, so espeak-ng reads it the way it is written and an
ASR trained on a few hundred utterances can learn it.
"""

SLOTS = {
    # Generic fillers, used by every topic.
    "aika": (
        "eilen", "tänään", "viime viikolla", "aamulla", "illalla", "viikonloppuna", "joskus",
        "just äsken", "toissapäivänä", "pari päivää sitten",
    ),
    "kenen_kaa": (
        "kaverin kaa", "mun siskon kaa", "mun veljen kaa", "äidin kaa", "isän kaa",
        "koko porukalla", "yksin", "mun poikaystävän kaa", "mun tyttöystävän kaa",
    ),
    "arvio": (
        "tosi kivaa", "ihan kauheeta", "aika jännää", "tosi hauskaa", "vähän tylsää",
        "ihan okei", "tosi siistiä", "ihan mahtavaa", "aika outoa",
    ),
    # Animal friends.
    "lemmikki": ("koira", "kissa", "kani", "marsu", "hevonen"),
    "lemmikin": ("koiran", "kissan", "kanin", "marsun", "hevosen"),
    "lemmikki_tekee": (
        "haukkuu koko ajan", "nukkuu mun sängyssä", "kehrää tosi kovaa", "syö ihan liikaa",
        "juoksee ympäri asuntoa", "leikkii pallolla", "pelkää ukkosta", "nuolee mun naamaa",
    ),
    # Sports moments.
    "lajia": ("futista", "lätkää", "salibandyä", "koripalloa", "tennistä"),
    "joukkue": ("leijonat", "meiän joukkue", "suomen maajoukkue"),
    "urheilutulos": (
        "voitti tosi tiukan pelin", "hävis finaalissa ihan niukasti", "teki kolme maalia pelissä",
        "pääsi jatkoon kisoissa", "voitti kultaa kisoissa",
    ),
    # My surroundings.
    "kotipaikka": (
        "keittiössä", "olohuoneessa", "parvekkeella", "mun huoneessa", "bussissa", "työpaikalla",
    ),
    "nakyma": (
        "kerrostaloja", "iso parkkipaikka", "naapurin piha", "vilkas katu", "rakennustyömaa",
        "bussipysäkki",
    ),
    "esine": (
        "läppäri ja kahvikuppi", "kasa papereita", "lamppu ja kirja", "vesipullo ja puhelin",
    ),
    "aani": (
        "naapuri poraa seinää", "rekka peruuttaa kadulla", "naapuri soittaa pianoa",
        "jääkaappi hurisee", "naapurit riitelee",
    ),
    # Summer.
    "kesapaikka": ("mökillä", "saaressa", "mummolassa", "rannalla"),
    "kesaruoka": (
        "jäätelöä", "mansikoita", "uusia perunoita", "vesimelonia",
    ),
    "grilliin": ("makkaraa", "maissia", "lohta"),
    # The cursed Covid.
    "rokote": ("ekan rokotteen", "toisen rokotteen", "tehosterokotteen", "koronarokotteen"),
    "korona_oire": (
        "kuumetta", "kurkkukipua", "yskää", "ihan hirvee flunssa",
    ),
    "peruttu": (
        "kaikki harrastukset", "mun synttärit", "koulun kevätjuhla", "kaikki keikat",
    ),
    # Media skills.
    "somea": ("tiktokia", "instagramia", "youtubea"),
    "somessa": ("tiktokissa", "instagramissa", "youtubessa", "somessa"),
    "mediatehtava": (
        "tarkistaa mistä lähteestä tieto on", "miettiä kuka uutisen on kirjottanu",
        "tunnistaa valeuutiset", "suojata omat tiedot", "huomata piilomainokset",
    ),
    # Rated R.
    "juoma": ("kaljaa", "kossua", "siideriä", "viinaa"),
    "bilepaikka": ("bileissä", "baarissa", "jatkoilla", "kotibileissä"),
    "kannissa_tekee": (
        "sammu sohvalle", "oksensi pihalle", "alko tappelemaan", "hukkas puhelimensa",
        "kaatu portaissa",
    ),
    # Nature.
    "metsasta": ("mustikoita", "puolukoita", "sieniä", "lakkoja"),
    "saa": (
        "sataa vettä", "tuulee tosi kovaa", "on sumusta", "on pakkasta", "sataa lunta",
        "paistaa aurinko",
    ),
    "metsaelain": ("peuran", "ketun", "jäniksen", "hirven"),
    "vuodenaika": ("syksyllä", "talvella", "keväällä"),
}
"""Slot fillers: ``{name}`` in a template is replaced by one of ``SLOTS[name]``."""

OPENERS = (
    "no", "joo", "öö", "tota", "no siis", "joo no", "niin", "no tota", "no niinku", "öö no",
    "ai niin", "joo siis", "no emmä tiiä mut",
)
"""Generic starts of a turn, shared by every topic."""

CLOSERS = (
    "ja silleen", "tai jotain", "emmä tiiä", "niinku", "se oli kyllä {arvio}", "ihan oikeesti",
    "ja sit se oli siinä", "mut joo", "tiätsä", "ja niin edelleen", "se oli {arvio}",
)
"""Generic ends of a turn, shared by every topic."""

TOPIC_TEMPLATES = {
    "animal_friends": (
        "mun {lemmikki} {lemmikki_tekee}",
        "me käytiin {aika} {lemmikin} kaa eläinlääkärissä",
        "mä ruokin meiän {lemmikin} ja sit mä silitin sitä",
        "meiän {lemmikki} sai {aika} viis pentua",
        "mä haluisin et meillä ois {lemmikki} mut äiti ei anna",
        "mä kävin {aika} tallilla ratsastamassa hevosella",
        "mun {lemmikki} osaa tosi monta temppua",
        "me otettiin {aika} uus {lemmikki} löytöeläinkodista",
        "mun {lemmikki} on niinku mun paras ystävä",
        "mä harjasin {lemmikin} turkin ja se tykkäs siitä",
        "meiän {lemmikki} karkas {aika} ja me etsittiin sitä",
    ),
    "sports_moments": (
        "mä pelaan {lajia} kolme kertaa viikossa",
        "{joukkue} {urheilutulos} {aika}",
        "mä tein {aika} mun elämän ekan maalin",
        "meiän valmentaja huus koko treenien ajan",
        "mä kävin {aika} salilla treenaamassa {kenen_kaa}",
        "mä juoksin {aika} kymmenen kilometriä treeneissä",
        "mä loukkasin mun polven {lajia} pelatessa",
        "se tuomari oli ihan sokee koko pelin",
        "me pelattiin {lajia} {aika} ja me voitettiin se peli",
        "mä hiihdin {aika} kakskyt kilometriä ladulla",
        "mä tykkään eniten katsoa {lajia} telkkarista",
    ),
    "my_surroundings": (
        "mä istun nyt {kotipaikka} ja juon kahvia",
        "ikkunasta näkyy {nakyma}",
        "mä kuulen just nyt ku {aani}",
        "mun pöydällä on {esine}",
        "täällä {kotipaikka} on ihan hiljasta",
        "meiän talon pihalla lapset leikkii hiekkalaatikolla",
        "tässä lähellä on kauppa ja kirjasto ja koulu",
        "mä asun kerrostalossa ja ikkunasta näkyy puisto",
        "meiän kadulla on aina ruuhkaa aamulla",
        "tästä ikkunasta mä nään {nakyma}",
        "mä istun nyt {kotipaikka} ja katon ikkunasta ulos",
    ),
    "summer": (
        "me mentiin {aika} mökille ja saunottiin koko ilta",
        "kesällä mä uin joka päivä järvessä",
        "me grillattiin {grilliin} rannalla {kenen_kaa}",
        "juhannuksena me oltiin {kesapaikka} {kenen_kaa}",
        "mä söin koko kesän {kesaruoka}",
        "kesälomalla mä en tehny yhtään mitään",
        "oli niin kuuma et piti mennä uimaan",
        "mä odotan jo ensi kesää ihan hirveesti",
        "kesällä mä olin töissä jäätelökioskilla rannalla",
        "me vietettiin koko heinäkuu {kesapaikka}",
        "helle kesti kolme viikkoa putkeen",
    ),
    "cursed_covid": (
        "koronan takia me oltiin etäkoulussa koko kevät",
        "mä sain koronan {aika} ja mulla oli {korona_oire}",
        "maskit piti olla naamalla joka paikassa",
        "mä kävin {aika} ottamassa {rokote}",
        "karanteenissa oli tosi tylsää ku ei päässy mihinkään",
        "rajoitusten takia {peruttu} peruttiin",
        "mä en nähny mun mummoa melkein vuoteen",
        "koronatesti kutitti ihan kamalasti nenässä",
        "kaupassa piti pitää turvaväliä ja käyttää käsidesiä",
        "koronan aikana koko elämä tuntu ihan loputtomalta",
        "mä olin koronan takia eristyksissä kaks viikkoa",
    ),
    "media_skills": (
        "netissä ja somessa on tosi paljon valeuutisia",
        "pitää aina {mediatehtava}",
        "mä selaan {somea} monta tuntia päivässä",
        "{somessa} kaikki näyttää paremmalta ku oikeesti",
        "meillä oli {aika} koulussa mediataidon tunti",
        "mainokset yrittää saada sut ostamaan kaikkee turhaa",
        "mä en ikinä kerro mun salasanaa kenellekään",
        "joku kirjotti ilkeitä kommentteja mun kuvaan {somessa}",
        "somessa kuvia voi muokata ihan helposti",
        "meiän opettaja opetti miten pitää {mediatehtava}",
        "mä seuraan pari vaikuttajaa {somessa}",
    ),
    "rated_r": (
        "me oltiin {aika} {bilepaikka} ja kaikki oli ihan kännissä",
        "mulla oli bileiden jälkeen ihan järkyttävä krapula",
        "me mentiin {aika} baariin ja sit jatkoille",
        "joku tyyppi {kannissa_tekee} keskellä bileitä",
        "mä join liikaa {juoma} ja sit mä oksensin",
        "poliisit tuli ku naapurit valitti metelistä",
        "portsari ei päästäny mua sisään baariin",
        "me poltettiin tupakkaa bileissä baarin takana",
        "se ilta meni ihan överiks {bilepaikka}",
        "mä heräsin {aika} ihan vieraasta asunnosta",
        "mä menin kännissä treffeille ja se meni ihan pieleen",
    ),
    "nature": (
        "me käytiin {aika} metsässä keräämässä {metsasta}",
        "{vuodenaika} ruska on tosi kaunis",
        "metsässä {saa} koko päivän",
        "mä näin {aika} metsässä {metsaelain}",
        "{vuodenaika} lunta tuli ihan hirveesti",
        "me yövyttiin teltassa vaelluksella lapissa",
        "aamulla oli sumua ja vähän pakkasta",
        "mä tykkään kävellä joen rannalla",
        "sää on ollu tosi outo tänä vuonna",
        "{vuodenaika} {saa} melkein joka päivä",
        "me löydettiin {aika} {metsasta} suolta",
    ),
}
"""Sentences about one topic each (keys are the labels of :data:`data_prep.topics.TOPICS`)."""

SHARED_TEMPLATES = (
    (("summer", "nature"), "me oltiin {aika} järvellä ja aurinko paisto"),
    (("summer", "nature"), "siellä oli tosi kaunista ja rauhallista"),
    (("summer", "nature"), "me istuttiin kalliolla ja katottiin järvelle"),
    (("animal_friends", "nature"), "mä näin {aika} oravan meiän pihalla"),
    (("animal_friends", "nature"), "linnut tuli syömään meiän pihalle"),
    (("animal_friends", "my_surroundings"), "naapurin koira haukkuu taas pihalla"),
    (("animal_friends", "my_surroundings"), "meiän kissa istuu ikkunalaudalla ja katsoo ulos"),
    (("sports_moments", "summer"), "mä pyöräilin {aika} tosi pitkän lenkin"),
    (("sports_moments", "summer"), "me pelattiin rannalla lentopalloa {kenen_kaa}"),
    (("sports_moments", "media_skills"), "mä katoin {aika} sen pelin telkkarista"),
    (("sports_moments", "media_skills"), "mä seuraan kaikkea urheilua netistä"),
    (("sports_moments", "animal_friends"), "mä vein koiran lenkille ja juoksin samalla"),
    (("cursed_covid", "my_surroundings"), "mä oon ollu koko päivän kotona"),
    (("cursed_covid", "my_surroundings"), "mä teen töitä kotona keittiön pöydän ääressä"),
    (("cursed_covid", "media_skills"), "uutisissa puhuttiin koko ajan samasta asiasta"),
    (("cursed_covid", "media_skills"), "mä luin netistä kaikki uusimmat luvut"),
    (("rated_r", "summer"), "juhannuksena me juotiin {juoma} mökillä"),
    (("rated_r", "summer"), "me mentiin festareille koko porukalla"),
    (("rated_r", "media_skills"), "joku laitto meistä nolon videon nettiin"),
    (("rated_r", "my_surroundings"), "naapurissa on taas kovaa meteliä koko yön"),
    (("nature", "my_surroundings"), "ulkona {saa} ja mä oon sisällä"),
    (("cursed_covid", "nature"), "mä kävin koronan aikana metsässä joka päivä"),
)
"""Sentences that two topics share: ``((topic, topic), template)``."""

GENERIC_TEMPLATES = (
    "emmä oikein tiiä mitä tähän pitäis sanoo",
    "se oli kyllä ihan hauska juttu",
    "mä en oikein muista enää mitä siinä tapahtu",
    "mä voisin puhua tästä vaikka kuinka kauan",
    "mun kaveri kerto mulle tästä yhen jutun",
    "no tota mä en oo ihan varma",
    "se on vähän vaikee selittää",
    "mä oon miettiny tätä {aika} aika paljon",
    "se oli {aika} ja se oli {arvio}",
    "kaikki oli ihan niinku ennenki",
)
"""Sentences that say nothing about the topic."""
