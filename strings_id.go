package paywall

// Indonesian (Bahasa Indonesia): every key of strings_en.go, and no other.
// Accept-Language "id", "id-ID" and the old code "in" choose it.
func init() {
	addLanguage("id", map[string]string{
		"status_400":                            "Permintaan tidak valid",
		"status_402":                            "Pembayaran diperlukan",
		"status_403":                            "Tidak diizinkan",
		"status_410":                            "Sudah tidak berlaku",
		"title_identity_missing":                "Masuk untuk berlangganan",
		"detail_identity_missing":               "Langganan terikat pada akun Anda di situs ini. Masuk terlebih dahulu, lalu berlangganan. Tidak ada yang ditagih.",
		"detail_no_subscription_account":        "Halaman ini khusus untuk pelanggan, dan akun Anda belum memiliki langganan.",
		"detail_checkout_not_completed_account": "Anda sudah memulai pembayaran, tetapi pembayarannya belum selesai, misalnya karena kartu ditolak. Lanjutkan untuk mencoba kartu atau metode pembayaran lain. Jika Anda sudah membayar, melanjutkan akan membuka akses tanpa menagih Anda lagi.",

		"title_signin":                "Masuk dengan email Anda",
		"detail_signin":               "Masukkan alamat email yang Anda gunakan untuk berlangganan. Kami akan mengirim tautan untuk masuk di perangkat ini.",
		"title_signin_sent":           "Periksa kotak masuk Anda",
		"detail_signin_sent":          "Jika alamat itu milik pelanggan, tautan masuk sedang dikirim. Tautan berlaku satu kali, selama {minutes} menit. Tidak ada yang masuk? Periksa folder spam, atau minta tautan baru beberapa menit lagi.",
		"title_signin_confirm":        "Masuk di perangkat ini?",
		"detail_signin_confirm":       "Tekan tombol untuk menyelesaikan proses masuk. Langganan Anda akan dikenali di browser ini.",
		"title_signin_email_invalid":  "Itu bukan alamat email",
		"detail_signin_email_invalid": "Masukkan alamat email yang Anda gunakan untuk berlangganan, misalnya nama@example.com.",
		"title_signin_link_invalid":   "Tautan masuk ini tidak berlaku",
		"detail_signin_link_invalid":  "Tautannya tidak lengkap atau tidak dibuat oleh situs ini. Salin seluruh tautan dari email, atau minta tautan baru.",
		"title_signin_link_expired":   "Tautan masuk ini sudah kedaluwarsa",
		"detail_signin_link_expired":  "Tautan masuk hanya berlaku sebentar. Minta tautan baru di bawah ini.",
		"title_signin_link_used":      "Tautan masuk ini sudah digunakan",
		"detail_signin_link_used":     "Setiap tautan masuk hanya berlaku satu kali. Jika itu Anda, Anda sudah masuk di tempat tautan itu digunakan. Untuk masuk juga di sini, minta tautan baru.",

		"signin_heading": "Sudah berlangganan?",
		"signin_summary": "Sudah berlangganan? Kirimi saya tautan masuk",
		"signin_label":   "Alamat email",
		"signin_button":  "Kirimi saya tautan masuk",
		"signin_note":    "Kami akan mengirim tautan untuk masuk di perangkat ini. Tautan berlaku satu kali, selama {minutes} menit.",
		"signin_confirm": "Masuk",
		"signin_as":      "Tautan ini membuka langganan milik",
		"status_429":     "Terlalu banyak permintaan",
		"status_500":     "Kesalahan server",
		"status_503":     "Layanan tidak tersedia",

		"title_no_subscription":         "Perlu berlangganan",
		"detail_no_subscription":        "Halaman ini khusus untuk pelanggan, dan browser ini belum memiliki langganan.",
		"title_subscription_ended":      "Langganan Anda telah berakhir",
		"detail_subscription_ended":     "Langganan Anda sudah tidak aktif. Berlangganan lagi untuk mendapatkan akses kembali.",
		"title_payment_failed":          "Pembayaran terakhir Anda gagal",
		"detail_payment_failed":         "Kami tidak dapat menagih metode pembayaran Anda untuk perpanjangan terakhir, sehingga akses Anda dijeda. Perbarui metode pembayaran Anda untuk memulihkannya. Anda tidak perlu berlangganan lagi.",
		"title_payment_processing":      "Pembayaran Anda sedang diproses",
		"detail_payment_processing":     "Pembayaran bank Anda masih diproses; ini dapat memakan waktu beberapa hari kerja. Anda akan mendapatkan akses segera setelah pembayarannya diterima, tanpa perlu melakukan apa pun lagi. Jangan membayar lagi.",
		"title_trial_ended":             "Masa uji coba gratis Anda telah berakhir",
		"detail_trial_ended":            "Masa uji coba gratis Anda sudah selesai. Berlangganan untuk tetap mendapatkan akses.",
		"title_checkout_not_completed":  "Pembayaran Anda belum selesai",
		"detail_checkout_not_completed": "Anda sudah memulai pembayaran di browser ini, tetapi pembayarannya belum selesai, misalnya karena kartu ditolak. Lanjutkan untuk mencoba kartu atau metode pembayaran lain. Jika Anda sudah membayar, melanjutkan akan membuka akses tanpa menagih Anda lagi.",
		"title_stripe_unavailable":      "Sistem pembayaran sedang tidak tersedia",
		"detail_stripe_unavailable":     "Kami tidak dapat menghubungi sistem pembayaran saat ini, sehingga langganan Anda tidak dapat diperiksa. Halaman ini tidak menagih apa pun. Tunggu sekitar {seconds} detik lalu coba lagi, dan jangan membayar lagi.",

		"title_checkout_link_invalid":   "Tautan pembayaran ini tidak berlaku",
		"detail_checkout_link_invalid":  "Tautan yang membawa Anda ke sini tidak menunjuk ke pembayaran di situs ini. Halaman ini tidak menagih apa pun. Jika Anda sudah membayar, langganan Anda aman: kembali ke halaman tadi, dan jika masih diminta berlangganan, hubungi kami alih-alih membayar lagi.",
		"title_checkout_other_browser":  "Pembayaran ini milik browser lain",
		"detail_checkout_other_browser": "Demi keamanan pembayaran Anda, pembayaran hanya dapat diselesaikan di browser tempat pembayaran itu dimulai. Jika Anda sudah membayar, langganan Anda aman: buka situs ini di browser tersebut, atau hubungi kami. Mohon jangan membayar lagi.",
		"title_checkout_limited":        "Terlalu banyak pembayaran dari jaringan Anda",
		"detail_checkout_limited":       "Pembayaran yang dimulai dari jaringan Anda telah mencapai batas situs ini. Tidak ada yang ditagih. Tunggu sekitar {wait} lalu coba lagi.",
		"title_success_limited":         "Terlalu banyak tautan pembayaran dari jaringan Anda",
		"detail_success_limited":        "Jaringan Anda telah membuka terlalu banyak tautan pembayaran yang bukan miliknya, sehingga tautan ini harus menunggu. Jika Anda sudah membayar, langganan Anda aman dan tidak ada yang akan ditagih lagi: tunggu sekitar {wait}, lalu muat ulang halaman ini.",
		"title_checkout_busy":           "Terlalu banyak pembayaran saat ini",
		"detail_checkout_busy":          "Banyak orang sedang memulai pembayaran saat ini. Tidak ada yang ditagih. Tunggu sekitar {wait} lalu coba lagi.",
		"title_origin_unknown":          "Pembayaran tidak tersedia di alamat ini",
		"detail_origin_unknown":         "Situs ini tidak dapat mengarahkan Anda ke halaman pembayaran dari alamat yang Anda gunakan. Tidak ada yang ditagih. Buka situs ini di alamat biasanya, atau hubungi kami.",

		"subscribe":          "Berlangganan",
		"subscribe_again":    "Berlangganan lagi",
		"try_again":          "Lanjutkan pembayaran",
		"checkout_note":      "Anda akan membayar dengan aman melalui Stripe, lalu kembali ke halaman ini.",
		"charged_note":       "Jika Anda tetap ditagih, jangan membayar lagi: hubungi kami dan kami akan membereskannya.",
		"processing_note":    "Jika pembayarannya belum diterima setelah beberapa hari kerja, hubungi kami dan kami akan membereskannya.",
		"update_payment":     "Perbarui metode pembayaran",
		"portal_note":        "Anda akan memperbaruinya dengan aman melalui Stripe, lalu kembali ke halaman ini.",
		"retry":              "Coba lagi",
		"unavailable_notice": "Jika Anda sudah berlangganan, langganan Anda aman. Tidak ada yang perlu dibayar di halaman ini.",

		"other_device_heading": "Sudah berlangganan di perangkat lain?",
		"other_device_text":    "Langganan Anda diingat di browser yang Anda gunakan untuk membayar. Buka situs ini di sana.",
		"other_device_support": "Mohon jangan berlangganan untuk kedua kalinya di sini: hubungi dukungan dan kami akan membantu.",
		"support":              "Hubungi dukungan",
		"not_you":              "Bukan Anda?",
		"sign_out":             "Keluar",
		"back":                 "Kembali ke halaman",
		"wait_seconds":         "{n} detik",
		"wait_minutes":         "{n} menit",
	})
}

// The sign-in mail's words (mail.go).
func init() {
	addMailLanguage("id", map[string]string{
		"subject":  "Tautan masuk Anda untuk {site}",
		"intro":    "Seseorang, semoga Anda, meminta untuk masuk ke {site} dengan alamat email ini. Buka tautan ini untuk masuk di perangkat tempat Anda membukanya:",
		"button":   "Masuk ke {site}",
		"lifetime": "Tautan ini berlaku satu kali, di browser mana pun, selama {minutes} menit.",
		"ignore":   "Jika Anda tidak memintanya, abaikan email ini: tidak ada yang bisa masuk tanpa tautan ini, dan tidak ada yang berubah.",
		"plain":    "Jika tombol tidak berfungsi, salin alamat ini ke browser Anda:",
	})
}
